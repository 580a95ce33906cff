//! Each command: its local checks, the RPC it sends, and what it prints.

use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use clap::CommandFactory;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use vswitch_proto::rpc::{
    AddPortParams, ApplyParams, ApplyResult, CacheResult, DelGroupsParams, FlowsParams, GetParams,
    GetResult, GroupsParams, MAX_MESSAGE_BYTES, ManifestObject, MeterIdParams, MetersParams,
    NodeName, NodeSpec, PROTOCOL_VERSION, PolicyCheckParams, PolicyCheckResult, PortName, RpcError,
    SelectFlowsParams, ShowResult, TraceParams, TraceResult, VersionResult, code, method,
};
use vswitch_proto::rpc::{
    Count, CtDumpParams, CtDumpResult, CtFlushParams, CtLimits, CtMaxconns, CtTimeout, CtTimeouts,
    CtZones,
};
use vswitch_proto::{conntrack, k8s};

use crate::cli::{AddPortArgs, Cli, Command, GetArgs, GetFormat};
use crate::client::{CallError, Client};
use crate::error::Failure;
use crate::output;

/// What every command needs from the global options.
#[derive(Debug)]
struct Ctx {
    socket: PathBuf,
    timeout: Option<Duration>,
    json: bool,
}

/// Runs the command, appending what it prints to `out`; the caller prints `out` even when
/// the command fails (`version` prints the client's line before asking the daemon). The
/// one note a successful command writes to stderr, `get`'s `No resources found`, is
/// written there directly.
pub fn run(cli: Cli, out: &mut String) -> Result<(), Failure> {
    let ctx = Ctx {
        socket: cli.socket,
        timeout: cli.timeout.0,
        json: cli.json,
    };
    match cli.command {
        Command::Completion { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "vswitchctl", &mut script);
            out.push_str(&String::from_utf8_lossy(&script));
            Ok(())
        }
        Command::Version => {
            if !ctx.json {
                let _ = writeln!(
                    out,
                    "vswitchctl {} (protocol {PROTOCOL_VERSION})",
                    env!("CARGO_PKG_VERSION")
                );
            }
            read(
                &ctx,
                method::VERSION,
                (),
                one::<VersionResult>,
                out,
                |v, out| output::version(env!("CARGO_PKG_VERSION"), PROTOCOL_VERSION, v, out),
            )
        }
        Command::Show => read(&ctx, method::SHOW, (), one::<ShowResult>, out, output::show),
        Command::AddPort(args) => {
            change(&ctx, method::ADD_PORT, add_port_params(args), out).map_err(refused)
        }
        Command::DelPort { name } => {
            change(&ctx, method::DEL_PORT, PortName { name }, out).map_err(refused)
        }
        Command::ListPorts => read(
            &ctx,
            method::LIST_PORTS,
            (),
            list("ports"),
            out,
            |p, out| output::list_ports(p, out),
        ),
        Command::ListPods => read(
            &ctx,
            method::LIST_PODS,
            (),
            one::<vswitch_proto::cni::PodList>,
            out,
            output::list_pods,
        ),
        Command::DumpPorts => read(
            &ctx,
            method::DUMP_PORTS,
            (),
            list("ports"),
            out,
            |p, out| output::dump_ports(p, out),
        ),
        Command::AddFlow { flow } => {
            let params = FlowsParams {
                flows: vec![flow],
                strict: false,
            };
            change(&ctx, method::ADD_FLOWS, params, out).map_err(refused)
        }
        Command::AddFlows { file } => add_flows(&ctx, &file, out),
        Command::ModFlows { strict, flow } => {
            let params = FlowsParams {
                flows: vec![flow],
                strict,
            };
            change(&ctx, method::MOD_FLOWS, params, out).map_err(refused)
        }
        Command::DelFlows { strict, criteria } => {
            let params = SelectFlowsParams { criteria, strict };
            change(&ctx, method::DEL_FLOWS, params, out).map_err(refused)
        }
        Command::DumpFlows {
            strict,
            names,
            criteria,
        } => read(
            &ctx,
            method::DUMP_FLOWS,
            SelectFlowsParams { criteria, strict },
            list("flows"),
            out,
            |f, out| output::dump_flows(f, names, out),
        ),
        Command::AddGroup { group } => {
            let params = GroupsParams {
                groups: vec![group],
            };
            change(&ctx, method::ADD_GROUPS, params, out).map_err(refused)
        }
        Command::ModGroup { group } => {
            let params = GroupsParams {
                groups: vec![group],
            };
            change(&ctx, method::MOD_GROUPS, params, out).map_err(refused)
        }
        Command::DelGroups { group_id } => {
            change(&ctx, method::DEL_GROUPS, DelGroupsParams { group_id }, out).map_err(refused)
        }
        Command::DumpGroups { names } => read(
            &ctx,
            method::DUMP_GROUPS,
            (),
            list("groups"),
            out,
            |g, out| output::dump_groups(g, names, out),
        ),
        Command::DumpGroupStats => read(
            &ctx,
            method::DUMP_GROUPS,
            (),
            list("groups"),
            out,
            |g, out| output::dump_group_stats(g, out),
        ),
        Command::AddMeter { meter } => {
            let params = MetersParams {
                meters: vec![meter],
            };
            change(&ctx, method::ADD_METERS, params, out).map_err(refused)
        }
        Command::DelMeters { meter_id } => {
            change(&ctx, method::DEL_METERS, MeterIdParams { meter_id }, out).map_err(refused)
        }
        Command::DumpMeters { meter_id } => read(
            &ctx,
            method::DUMP_METERS,
            MeterIdParams { meter_id },
            list("meters"),
            out,
            |m, out| output::dump_meters(m, out),
        ),
        Command::MeterStats { meter_id } => read(
            &ctx,
            method::DUMP_METERS,
            MeterIdParams { meter_id },
            list("meters"),
            out,
            |m, out| output::meter_stats(m, out),
        ),
        Command::Trace { flow, ct_next } => read(
            &ctx,
            method::TRACE,
            TraceParams { flow, ct_next },
            one::<TraceResult>,
            out,
            |t, out| output::text(&t.text, out),
        ),
        Command::PolicyCheck {
            from,
            to,
            protocol,
            port,
        } => read(
            &ctx,
            method::POLICY_CHECK,
            PolicyCheckParams {
                from,
                to,
                protocol,
                port,
            },
            one::<PolicyCheckResult>,
            out,
            output::policy_check,
        ),
        Command::DumpCache => read(
            &ctx,
            method::DUMP_CACHE,
            (),
            one::<CacheResult>,
            out,
            output::dump_cache,
        ),
        Command::DumpConntrack {
            zone,
            stats,
            zone_arg,
        } => {
            let zone = one_zone(zone, zone_arg)?;
            read(
                &ctx,
                method::DUMP_CONNTRACK,
                CtDumpParams { zone, stats },
                one::<CtDumpResult>,
                out,
                |r, out| output::lines(&r.connections, out),
            )
        }
        Command::FlushConntrack { zone, args } => flush_conntrack(&ctx, zone, args, out),
        Command::CtSetLimits { limits } => {
            let params = conntrack::parse_set_limits(&limits).map_err(Failure::Invalid)?;
            change(&ctx, method::CT_SET_LIMITS, params, out).map_err(refused)
        }
        Command::CtGetLimits { zones } => {
            let zones = conntrack::parse_zone_list(&zones).map_err(Failure::Invalid)?;
            read(
                &ctx,
                method::CT_GET_LIMITS,
                CtZones { zones },
                one::<CtLimits>,
                out,
                output::ct_limits,
            )
        }
        Command::CtDelLimits { zones } => {
            let zones = conntrack::parse_zone_list(&zones).map_err(Failure::Invalid)?;
            change(&ctx, method::CT_DEL_LIMITS, CtZones { zones }, out).map_err(refused)
        }
        Command::CtSetMaxconns { maxconns } => {
            let maxconns = maxconns.parse().map_err(|_| {
                Failure::Invalid(format!("`{maxconns}` is not a number of connections"))
            })?;
            change(&ctx, method::CT_SET_MAXCONNS, CtMaxconns { maxconns }, out).map_err(refused)?;
            if !ctx.json {
                out.push_str("setting maxconns successful\n");
            }
            Ok(())
        }
        Command::CtGetMaxconns => read(
            &ctx,
            method::CT_GET_MAXCONNS,
            (),
            one::<CtMaxconns>,
            out,
            |m, out| {
                let _ = writeln!(out, "{}", m.maxconns);
            },
        ),
        Command::CtGetNconns => read(
            &ctx,
            method::CT_GET_NCONNS,
            (),
            one::<Count>,
            out,
            |c, out| {
                let _ = writeln!(out, "{}", c.count);
            },
        ),
        Command::CtGetTimeouts => read(
            &ctx,
            method::CT_GET_TIMEOUTS,
            (),
            one::<CtTimeouts>,
            out,
            output::ct_timeouts,
        ),
        Command::CtSetTimeouts { timeouts } => {
            let timeouts = timeouts
                .iter()
                .map(|t| conntrack::parse_timeout(t).map(|(name, secs)| CtTimeout { name, secs }))
                .collect::<Result<Vec<_>, _>>()
                .map_err(Failure::Invalid)?;
            change(&ctx, method::CT_SET_TIMEOUTS, CtTimeouts { timeouts }, out).map_err(refused)
        }
        Command::ReopenLogs => change(&ctx, method::REOPEN_LOGS, (), out).map_err(refused),
        Command::AddNode(a) => {
            let params = NodeSpec {
                name: a.name,
                pod_cidr: a.pod_cidr,
                node_ip: a.node_ip,
            };
            change(&ctx, method::ADD_NODE, params, out).map_err(refused)
        }
        Command::DelNode { name } => {
            change(&ctx, method::DEL_NODE, NodeName { name }, out).map_err(refused)
        }
        Command::ListNodes => read(
            &ctx,
            method::LIST_NODES,
            (),
            list("nodes"),
            out,
            |n, out| output::list_nodes(n, out),
        ),
        Command::Get(a) => get(&ctx, a, out),
        Command::Apply(a) => manifests(&ctx, method::APPLY, &a.files, out),
        Command::Delete(a) => manifests(&ctx, method::DELETE, &a.files, out),
    }
}

/// The zone of `dump-conntrack`/`flush-conntrack`: `--zone N` or dpctl's `zone=N`.
fn one_zone(opt: Option<String>, arg: Option<String>) -> Result<Option<u16>, Failure> {
    let zone = |s: &str| conntrack::parse_zone(s).map_err(Failure::Invalid);
    match (opt, arg) {
        (Some(_), Some(_)) => Err(Failure::Invalid(
            "the zone is given twice (--zone and zone=)".into(),
        )),
        (Some(z), None) => zone(&z).map(Some),
        (None, Some(a)) if a.starts_with("zone=") => zone(&a).map(Some),
        (None, Some(a)) => Err(Failure::Invalid(format!(
            "`{a}`: expected zone=N (or --zone N)"
        ))),
        (None, None) => Ok(None),
    }
}

/// `flush-conntrack [--zone N] [zone=N] [TUPLE] [REPLY-TUPLE]`: tuples are checked here,
/// with the switch's words, before anything is sent.
fn flush_conntrack(
    ctx: &Ctx,
    zone: Option<String>,
    args: Vec<String>,
    out: &mut String,
) -> Result<(), Failure> {
    let mut args = args.into_iter().peekable();
    let zone_arg = args.next_if(|a| a.starts_with("zone="));
    let zone = one_zone(zone, zone_arg)?;
    let tuples: Vec<String> = args.collect();
    if tuples.len() > 2 {
        return Err(Failure::Invalid(
            "at most two tuples: the original direction's and the reply's".into(),
        ));
    }
    for t in &tuples {
        conntrack::parse_tuple(t).map_err(Failure::Invalid)?;
    }
    let mut tuples = tuples.into_iter();
    let params = CtFlushParams {
        zone,
        tuple: tuples.next(),
        reply_tuple: tuples.next(),
    };
    read(
        ctx,
        method::FLUSH_CONNTRACK,
        params,
        one::<Count>,
        out,
        |c, out| {
            let _ = writeln!(
                out,
                "{} connection{} flushed",
                c.count,
                if c.count == 1 { "" } else { "s" }
            );
        },
    )
}

/// `get`: the switch resolves the resource and says which columns its table has; this
/// prints them, or the objects (`-o json|yaml`), or their names, as kubectl would.
fn get(ctx: &Ctx, a: GetArgs, out: &mut String) -> Result<(), Failure> {
    let params = GetParams {
        resource: a.resource,
        name: a.name,
        namespace: a.namespace,
        all_namespaces: a.all_namespaces,
    };
    let value = call(ctx, method::GET, &params).map_err(get_error)?;
    let result: GetResult = serde_json::from_value(value.clone())
        .map_err(|e| Failure::Unreadable(format!("the result of `{}` ({e})", method::GET)))?;
    if ctx.json {
        json(&value, out);
        return Ok(());
    }
    let by_name = params.name.is_some();
    match a.output {
        None | Some(GetFormat::Wide) if result.items.is_empty() => {
            // kubectl's message goes to stderr, and an empty list is no failure.
            let namespace = params.namespace.as_deref();
            eprintln!(
                "{}",
                output::no_resources(&result, namespace, params.all_namespaces)
            );
        }
        None => output::get_table(&result, false, params.all_namespaces, out),
        Some(GetFormat::Wide) => output::get_table(&result, true, params.all_namespaces, out),
        Some(GetFormat::Json) => output::get_json(&output::get_objects(&result, by_name), out),
        Some(GetFormat::Yaml) => output::get_yaml(&output::get_objects(&result, by_name), out),
        Some(GetFormat::Name) => output::get_names(&result, out),
    }
    Ok(())
}

/// `get`'s refusals as kubectl prints them: a missing object is the server's NotFound, an
/// unknown resource type kubectl's own error.
fn get_error(e: CallError) -> Failure {
    match e {
        CallError::Rpc(e) if e.code == code::NOT_FOUND => {
            if e.message
                .starts_with("the server doesn't have a resource type")
            {
                Failure::Reported(format!("error: {}\n", e.message))
            } else {
                Failure::Reported(format!("Error from server (NotFound): {}\n", e.message))
            }
        }
        other => refused(other),
    }
}

fn add_port_params(a: AddPortArgs) -> AddPortParams {
    AddPortParams {
        name: a.name,
        port_type: a.port_type.into(),
        netns: a.netns,
        ifname: a.ifname,
        mac: a.mac,
        mtu: a.mtu,
        ip: a.ip,
        gateway: a.gateway,
    }
}

fn call(ctx: &Ctx, method: &str, params: impl Serialize) -> Result<Value, CallError> {
    Client::connect(&ctx.socket, ctx.timeout)?.call(method, params)
}

/// The switch's refusal, printed as it wrote it.
fn refused(e: CallError) -> Failure {
    match e {
        CallError::Rpc(e) => Failure::Refused(e.message),
        CallError::Failed(f) => f,
    }
}

/// A read command: the result is checked against its type, then printed as text by
/// `render`, or as the daemon sent it with `--json`.
fn read<T>(
    ctx: &Ctx,
    method: &str,
    params: impl Serialize,
    decode: impl FnOnce(Value) -> Result<T, serde_json::Error>,
    out: &mut String,
    render: impl FnOnce(&T, &mut String),
) -> Result<(), Failure> {
    let value = call(ctx, method, params).map_err(refused)?;
    let typed = decode(value.clone())
        .map_err(|e| Failure::Unreadable(format!("the result of `{method}` ({e})")))?;
    if ctx.json {
        json(&value, out);
    } else {
        render(&typed, out);
    }
    Ok(())
}

/// A change: silent on success like ovs-vsctl and ovs-ofctl; `--json` shows the result.
fn change(
    ctx: &Ctx,
    method: &str,
    params: impl Serialize,
    out: &mut String,
) -> Result<(), CallError> {
    let value = call(ctx, method, params)?;
    if ctx.json {
        json(&value, out);
    }
    Ok(())
}

fn json(value: &Value, out: &mut String) {
    // Serializing a `Value` cannot fail: its keys are strings.
    out.push_str(&serde_json::to_string_pretty(value).unwrap_or_default());
    out.push('\n');
}

fn one<T: DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
    serde_json::from_value(v)
}

/// A list result: a bare array, or an object holding it under `key`.
fn list<T: DeserializeOwned>(
    key: &'static str,
) -> impl FnOnce(Value) -> Result<Vec<T>, serde_json::Error> {
    move |v| match v {
        Value::Object(mut fields) if fields.contains_key(key) => {
            serde_json::from_value(fields.remove(key).unwrap_or_default())
        }
        other => serde_json::from_value(other),
    }
}

/// The flow lines of a file and the line number of each (1-based): blank lines and
/// `#` comments are skipped.
fn flow_lines(text: &str) -> (Vec<String>, Vec<usize>) {
    text.lines()
        .enumerate()
        .map(|(i, l)| (l.trim(), i + 1))
        .filter(|(l, _)| !l.is_empty() && !l.starts_with('#'))
        .map(|(l, n)| (l.to_string(), n))
        .unzip()
}

fn add_flows(ctx: &Ctx, file: &str, out: &mut String) -> Result<(), Failure> {
    let (label, text) = if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::Usage(format!("cannot read flows from stdin: {e}")))?;
        ("<stdin>", text)
    } else {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Failure::Usage(format!("cannot read {file}: {e}")))?;
        (file, text)
    };
    let (flows, lines) = flow_lines(&text);
    let params = FlowsParams {
        flows,
        strict: false,
    };
    change(ctx, method::ADD_FLOWS, params, out).map_err(|e| match e {
        CallError::Rpc(e) => match refused_line(&e, &lines) {
            Some(line) => Failure::Refused(format!("{label}:{line}: {}", e.message)),
            None => Failure::Refused(e.message),
        },
        CallError::Failed(f) => f,
    })
}

/// The file line of the flow a refusal names by its index in the request (`data.index`,
/// counted from 0).
fn refused_line(e: &RpcError, lines: &[usize]) -> Option<usize> {
    let index = e.data.as_ref()?.get("index")?.as_u64()?;
    lines.get(usize::try_from(index).ok()?).copied()
}

/// How a manifest's source is named in messages (`-` is stdin).
pub fn source_label(source: &str) -> &str {
    if source == "-" { "<stdin>" } else { source }
}

/// `apply` and `delete`: every object of every file goes in one request, or none does
/// when a file does not load. The outcomes are printed one a line, errors last on stderr.
fn manifests(ctx: &Ctx, method: &str, files: &[String], out: &mut String) -> Result<(), Failure> {
    let mut objects = Vec::new();
    for (source, text) in manifest_texts(files)? {
        let loaded = k8s::load_documents(&source, &text).map_err(|mut e| {
            e.file = source_label(&e.file).to_string();
            Failure::Invalid(e.to_string())
        })?;
        objects.extend(loaded.into_iter().map(|mut o| {
            o.object = k8s::essentials(&o.object);
            o
        }));
    }
    if objects.is_empty() {
        let names: Vec<&str> = files.iter().map(|f| source_label(f)).collect();
        return Err(Failure::Invalid(format!(
            "no objects in {} (only empty documents)",
            names.join(", ")
        )));
    }
    // A manifest is one request (one change, saved and published once) as long as it
    // fits one; a larger one goes in as few requests as fit.
    let mut result = ApplyResult::default();
    let mut values = Vec::new();
    for chunk in request_chunks(objects)? {
        let value = call(ctx, method, ApplyParams { objects: chunk }).map_err(refused)?;
        let part: ApplyResult = serde_json::from_value(value.clone())
            .map_err(|e| Failure::Unreadable(format!("the result of `{method}` ({e})")))?;
        result.results.extend(part.results);
        values.push(value);
    }
    if ctx.json {
        match values.len() {
            1 => json(&values[0], out),
            _ => json(&serde_json::to_value(&result).unwrap_or_default(), out),
        }
    } else {
        output::outcomes(&result, out);
    }
    let errors = output::outcome_errors(&result);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::Reported(errors))
    }
}

/// The objects in requests the switch reads (up to [`MAX_MESSAGE_BYTES`] each): all in
/// one when they fit, else in order, as many in each as fit. One object too large for a
/// request is an error.
fn request_chunks(objects: Vec<ManifestObject>) -> Result<Vec<Vec<ManifestObject>>, Failure> {
    // The envelope (`jsonrpc`, `id`, `method`, the list's brackets) adds well under a
    // kilobyte; each object adds a comma.
    const ENVELOPE: usize = 1024;
    let limit = MAX_MESSAGE_BYTES - ENVELOPE;
    let mut chunks = vec![Vec::new()];
    let mut size = 0;
    for o in objects {
        let n = serde_json::to_vec(&o).map(|v| v.len()).unwrap_or(0) + 1;
        if n > limit {
            return Err(Failure::Invalid(format!(
                "{}: document {}: one object of {} MiB, more than the {} MiB vswitchd reads",
                source_label(&o.source),
                o.doc,
                n.div_ceil(1 << 20),
                MAX_MESSAGE_BYTES >> 20
            )));
        }
        if size + n > limit {
            chunks.push(Vec::new());
            size = 0;
        }
        size += n;
        chunks.last_mut().expect("a chunk").push(o);
    }
    Ok(chunks)
}

/// The text of each manifest named by `-f`, with its source name: a file, stdin (`-`,
/// once), or a directory's `.yaml`, `.yml` and `.json` files in name order (not its
/// subdirectories), as kubectl takes them.
fn manifest_texts(files: &[String]) -> Result<Vec<(String, String)>, Failure> {
    if files.iter().filter(|f| *f == "-").count() > 1 {
        return Err(Failure::Usage("-f - (stdin) can be given only once".into()));
    }
    let mut texts = Vec::new();
    for file in files {
        if file == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(k8s::MAX_MANIFEST_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| Failure::Usage(format!("cannot read stdin: {e}")))?;
            texts.push((file.clone(), manifest_text(file, bytes)?));
            continue;
        }
        let path = std::path::Path::new(file);
        if !path.is_dir() {
            texts.push((file.clone(), manifest_text(file, read_file(path)?)?));
            continue;
        }
        let entries = std::fs::read_dir(path)
            .map_err(|e| Failure::Usage(format!("cannot read {file}: {e}")))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
            })
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(Failure::Usage(format!(
                "{file} is a directory with no .yaml, .yml or .json file"
            )));
        }
        for p in paths {
            let name = p.display().to_string();
            let text = manifest_text(&name, read_file(&p)?)?;
            texts.push((name, text));
        }
    }
    Ok(texts)
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, Failure> {
    let cannot = |e: std::io::Error| Failure::Usage(format!("cannot read {}: {e}", path.display()));
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(k8s::MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    Ok(bytes)
}

/// A manifest's bytes as text: UTF-8, and no larger than a manifest may be.
fn manifest_text(source: &str, bytes: Vec<u8>) -> Result<String, Failure> {
    let label = source_label(source);
    if bytes.len() > k8s::MAX_MANIFEST_BYTES {
        return Err(Failure::Invalid(format!(
            "{label}: larger than the {} MiB a manifest may have",
            k8s::MAX_MANIFEST_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        Failure::Invalid(format!(
            "{label}: not UTF-8 text (byte {} is not)",
            e.utf8_error().valid_up_to()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch_proto::rpc::code;

    #[test]
    fn flow_file_lines_map_back() {
        let text =
            "# table 0\n\n  priority=1,actions=drop  \r\n\t# indented comment\nip,actions=normal\n";
        let (flows, lines) = flow_lines(text);
        assert_eq!(flows, ["priority=1,actions=drop", "ip,actions=normal"]);
        assert_eq!(lines, [3, 5]);
        let mut e = RpcError::new(code::REFUSED, "bad");
        assert_eq!(refused_line(&e, &lines), None);
        e.data = Some(serde_json::json!({"index": 1}));
        assert_eq!(refused_line(&e, &lines), Some(5));
        e.data = Some(serde_json::json!({"index": 2}));
        assert_eq!(refused_line(&e, &lines), None);
    }

    #[test]
    fn lists_bare_or_wrapped() {
        let bare = serde_json::json!([{"group_id": 1, "packets": 0, "bytes": 0, "line": "x"}]);
        let wrapped = serde_json::json!({ "groups": bare.clone() });
        for v in [bare, wrapped] {
            let g: Vec<vswitch_proto::rpc::DumpedGroup> = list("groups")(v).unwrap();
            assert_eq!(g[0].group_id, 1);
        }
        assert!(list::<vswitch_proto::rpc::DumpedGroup>("groups")(serde_json::json!({})).is_err());
    }

    #[test]
    fn a_manifest_too_large_for_one_request_goes_in_several() {
        let object = |i: usize, len: usize| ManifestObject {
            source: "big.yaml".into(),
            doc: i,
            object: serde_json::json!({"kind": "ConfigMap", "data": "x".repeat(len)}),
        };
        let small: Vec<ManifestObject> = (1..=3).map(|i| object(i, 10)).collect();
        assert_eq!(request_chunks(small).unwrap().len(), 1);
        let big: Vec<ManifestObject> = (1..=5).map(|i| object(i, 6 << 20)).collect();
        let chunks = request_chunks(big).unwrap();
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        let docs: Vec<usize> = chunks.iter().flatten().map(|o| o.doc).collect();
        assert_eq!(docs, [1, 2, 3, 4, 5], "in order");
        let e = request_chunks(vec![object(7, 17 << 20)]).unwrap_err();
        assert!(
            matches!(&e, Failure::Invalid(m) if m.contains("document 7")),
            "{e:?}"
        );
    }
}
