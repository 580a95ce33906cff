# shellcheck shell=bash
# What scripts/demo, scripts/test and .ci/run need from the machine, and the Debian/Ubuntu
# package that has each: the one list. Sourced (from the repository's root) by those three;
# deps_ensure is the entry point.
#
# A need is a program looked up on PATH (a file, never a shell builtin: the tests exec
# `kill` themselves), or a file named by its absolute path. "-" as the package: not from
# apt. The tags say who needs it:
#   demo       scripts/demo
#   test       scripts/test as any user (the tests that need no root)
#   root-test  scripts/test as root, on top of `test` (the tests in network namespaces)
#   ci         .ci/run, on top of those (the fuzz targets build libFuzzer, in C++)
# Found by reading the scripts and what the tests exec: the TOOLS of tests/tests/e2e.rs,
# cni.rs and overlay.rs (which panic without them), the helpers of tests/src/e2e.rs and
# cni.rs, switch/src/sys/tests.rs, and the reference CNI plugins tests/tests/cni.rs chains.
DEPS_TABLE='
# cargo links with cc, and a dev-dependency (criterion) compiles C.
cargo                         -                            demo test
cc                            build-essential              demo test
c++                           build-essential              ci
# A CNI plugin that hangs is killed, process group and all, with kill(1): tests/src/cni.rs.
kill                          procps                       test
ip                            iproute2                     demo root-test
ss                            iproute2                     root-test
bridge                        iproute2                     root-test
tc                            iproute2                     root-test
ping                          iputils-ping                 demo root-test
iperf3                        iperf3                       demo root-test
python3                       python3                      demo root-test
nsenter                       util-linux                   demo root-test
setpriv                       util-linux                   root-test
prlimit                       util-linux                   root-test
sysctl                        procps                       root-test
timeout                       coreutils                    root-test
ethtool                       ethtool                      root-test
tcpdump                       tcpdump                      root-test
iptables                      iptables                     demo root-test
/usr/lib/cni/host-local       containernetworking-plugins  root-test
/usr/lib/cni/tuning           containernetworking-plugins  root-test
/usr/lib/cni/bandwidth        containernetworking-plugins  root-test
'

# Prints "NEED PACKAGE" for each need of any of TAGS that this machine lacks.
deps_missing() {
    local need pkg tags tag
    while read -r need pkg tags; do
        case $need in '' | '#'*) continue ;; esac
        for tag in "$@"; do
            case " $tags " in *" $tag "*) ;; *) continue ;; esac
            case $need in
            /*) [ -e "$need" ] && break ;;
            *) type -P "$need" >/dev/null && break ;;
            esac
            echo "$need $pkg"
            break
        done
    done <<<"$DEPS_TABLE"
    return 0
}

# Makes sure everything TAGS need is there. Nothing missing: silent, returns 0. As root
# with apt-get, when all that is missing comes from apt: installs it (one line on stderr
# says what) and returns 0. Otherwise (not root, no apt-get, or cargo missing) it installs
# nothing: names each missing need and how to get it on stderr, returns 1.
deps_ensure() {
    local missing need pkg pkgs=() names=() manual=0
    missing=$(deps_missing "$@")
    [ -n "$missing" ] || return 0
    while read -r need pkg; do
        names+=("$need")
        if [ "$pkg" = - ]; then
            manual=1
        else
            case " ${pkgs[*]} " in *" $pkg "*) ;; *) pkgs+=("$pkg") ;; esac
        fi
    done <<<"$missing"

    if [ "$manual" = 0 ] && [ "$(id -u)" = 0 ] && type -P apt-get >/dev/null; then
        echo "installing ${pkgs[*]} (for ${names[*]})" >&2
        local out
        if ! out=$(apt-get update -qq 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                "${pkgs[@]}" 2>&1 >/dev/null); then
            printf '%s\n' "$out" >&2
            echo "apt-get could not install ${pkgs[*]}" >&2
            return 1
        fi
        missing=$(deps_missing "$@")
        [ -n "$missing" ] || return 0
        echo "still missing after apt-get install:" >&2
    fi

    while read -r need pkg; do
        if [ "$pkg" != - ]; then
            echo "missing: $need (apt-get install $pkg)" >&2
        elif [ "$need" = cargo ]; then
            echo "missing: cargo (Rust, from rustup: curl --proto '=https' -sSf https://sh.rustup.rs | sh)" >&2
            if [ -n "${SUDO_USER:-}" ]; then
                echo "  (under sudo, PATH may lack your ~/.cargo/bin: sudo env PATH=\"\$PATH\" $0)" >&2
            fi
        else
            echo "missing: $need" >&2
        fi
    done <<<"$missing"
    if [ "${#pkgs[@]}" -gt 1 ]; then
        echo "all at once: apt-get install ${pkgs[*]}" >&2
    fi
    return 1
}
