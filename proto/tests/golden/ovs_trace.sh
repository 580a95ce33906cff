#!/bin/bash
# Runs ofproto/trace on a private Open vSwitch (3.1), to compare this switch's megaflows and
# datapath actions with Open vSwitch's (the trace tests in switch/src/ofproto/tests.rs quote
# what it printed).
#
#   proto/tests/golden/ovs_trace.sh COMMANDS TRACES
#
# COMMANDS: one ovs-ofctl command a line, without `ovs-ofctl -O OpenFlow15`, e.g.
#   add-group br0 'group_id=1,type=select,selection_method=hash,fields(ip_src),bucket=output:1'
#   add-flow br0 'in_port=3,actions=group:1'
# TRACES: one flow a line, e.g. in_port=3,tcp,nw_src=10.0.0.1,tp_dst=80
# Like ovs_oracle.sh it uses a temporary directory and a `dummy` datapath (ports p1 to p4,
# numbered 1 to 4): no kernel module, no real interface is touched.
set -euo pipefail
D=$(mktemp -d)
export OVS_RUNDIR=$D OVS_DBDIR=$D OVS_LOGDIR=$D
cleanup() {
    for p in "$D/vswitchd.pid" "$D/ovsdb.pid"; do
        [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
    done
    sleep 0.2
    rm -rf "$D"
}
trap cleanup EXIT
ovsdb-tool create "$D/conf.db" /usr/share/openvswitch/vswitch.ovsschema
ovsdb-server --remote="punix:$D/db.sock" --pidfile="$D/ovsdb.pid" --detach --no-chdir \
    --log-file="$D/ovsdb.log" "$D/conf.db"
vsctl() { ovs-vsctl --db="unix:$D/db.sock" "$@"; }
vsctl --no-wait init
ovs-vswitchd "unix:$D/db.sock" --enable-dummy=override --pidfile="$D/vswitchd.pid" --detach \
    --no-chdir --log-file="$D/vswitchd.log" -vconsole:off
vsctl add-br br0 -- set bridge br0 datapath_type=dummy \
    protocols=OpenFlow10,OpenFlow13,OpenFlow15
for n in 1 2 3 4; do
    vsctl add-port br0 "p$n" -- set interface "p$n" type=dummy ofport_request=$n
done
while IFS= read -r c; do
    eval "ovs-ofctl -O OpenFlow15 $c" || true
done < "$1"
pid=$(cat "$D/vswitchd.pid")
while IFS= read -r t; do
    echo "### $t"
    ovs-appctl -t "$D/ovs-vswitchd.$pid.ctl" ofproto/trace br0 "$t" \
        | grep -E "Megaflow|Datapath actions" || true
done < "$2"
