use super::*;
use std::net::{IpAddr, Ipv4Addr};
use vswitch_proto::rpc::PortType;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "vswitch-store-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&d);
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn port(no: u32, name: &str) -> PortRecord {
    PortRecord {
        no,
        name: name.into(),
        port_type: PortType::Memory,
        netns: None,
        ifname: name.into(),
        mac: Some("02:00:00:00:00:01".parse().unwrap()),
        mtu: None,
        ip: None,
        gateway: None,
        tunnel: None,
    }
}

fn flow(k: &str, line: &str) -> Op {
    Op::Flow {
        k: k.into(),
        v: Some(line.into()),
    }
}

#[test]
fn changes_survive_a_restart_and_a_compaction() {
    let d = Dir::new("rt");
    let mut s = Store::open(&d.0).unwrap();
    assert_eq!(
        s.load().unwrap(),
        Image {
            read_version: STATE_VERSION,
            ..Image::default()
        }
    );
    s.commit(&[
        Op::Port {
            no: 1,
            v: Some(port(1, "a")),
        },
        flow("0/5/ip", "priority=5,ip actions=drop"),
    ])
    .unwrap();
    s.commit(&[Op::Port {
        no: 2,
        v: Some(port(2, "b")),
    }])
    .unwrap();
    s.commit(&[Op::Port { no: 1, v: None }]).unwrap();
    let mut again = Store::open(&d.0).unwrap();
    let img = again.load().unwrap();
    assert_eq!(img.ports.keys().copied().collect::<Vec<_>>(), [2]);
    assert_eq!(img.flows.len(), 1);
    assert_eq!(again.seq(), 3);
    // Compacted: the snapshot holds it all and the journal is empty.
    again.compact(&img).unwrap();
    assert_eq!(fs::metadata(again.journal_path()).unwrap().len(), 0);
    again
        .commit(&[Op::Group {
            id: 3,
            v: Some("group_id=3,type=all".into()),
        }])
        .unwrap();
    let mut third = Store::open(&d.0).unwrap();
    let img3 = third.load().unwrap();
    assert_eq!(img3.ports, img.ports);
    assert_eq!(img3.flows, img.flows);
    assert_eq!(img3.groups.len(), 1);
    assert_eq!(third.seq(), 4);
}

#[test]
fn a_compaction_cut_short_before_the_journal_is_emptied_loses_nothing() {
    let d = Dir::new("cut");
    let mut s = Store::open(&d.0).unwrap();
    s.load().unwrap();
    s.commit(&[flow("k1", "actions=drop")]).unwrap();
    s.commit(&[flow("k2", "priority=2,actions=drop")]).unwrap();
    let journal = fs::read(s.journal_path()).unwrap();
    let img = Store::open(&d.0).unwrap().load().unwrap();
    s.compact(&img).unwrap();
    // As if the switch had stopped right after the rename: the old lines are back.
    fs::write(s.journal_path(), &journal).unwrap();
    let mut again = Store::open(&d.0).unwrap();
    let back = again.load().unwrap();
    assert_eq!(back.flows, img.flows);
    again
        .commit(&[flow("k3", "priority=3,actions=drop")])
        .unwrap();
    assert_eq!(Store::open(&d.0).unwrap().load().unwrap().flows.len(), 3);
}

#[test]
fn a_torn_last_line_is_dropped_and_other_damage_stops_the_start() {
    let d = Dir::new("torn");
    let mut s = Store::open(&d.0).unwrap();
    s.load().unwrap();
    s.commit(&[flow("k1", "actions=drop")]).unwrap();
    let mut f = OpenOptions::new()
        .append(true)
        .open(s.journal_path())
        .unwrap();
    f.write_all(b"{\"seq\":2,\"ops\":[{\"c\":\"flo").unwrap();
    drop(f);
    let mut again = Store::open(&d.0).unwrap();
    assert_eq!(again.load().unwrap().flows.len(), 1);
    // The torn tail is gone from the file: the next change follows a whole line.
    again
        .commit(&[flow("k2", "priority=2,actions=drop")])
        .unwrap();
    assert_eq!(Store::open(&d.0).unwrap().load().unwrap().flows.len(), 2);

    // A bad line that is not the last one.
    let text = fs::read_to_string(s.journal_path()).unwrap();
    fs::write(s.journal_path(), format!("garbage\n{text}")).unwrap();
    let e = Store::open(&d.0).unwrap().load().unwrap_err().to_string();
    assert!(e.contains("state.journal") && e.contains("line 1"), "{e}");
    // A missing change.
    let lines: Vec<&str> = text.lines().collect();
    fs::write(s.journal_path(), format!("{}\n", lines[1])).unwrap();
    let e = Store::open(&d.0).unwrap().load().unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
}

#[test]
fn a_failed_change_leaves_nothing_behind() {
    let d = Dir::new("fail");
    let mut s = Store::open(&d.0).unwrap();
    s.load().unwrap();
    s.commit(&[flow("k1", "actions=drop")]).unwrap();
    let journal = s.journal_path();
    fs::rename(&journal, d.0.join("aside")).unwrap();
    fs::create_dir(&journal).unwrap();
    assert!(s.commit(&[flow("k2", "actions=drop")]).is_err());
    fs::remove_dir(&journal).unwrap();
    fs::rename(d.0.join("aside"), &journal).unwrap();
    s.commit(&[flow("k3", "actions=drop")]).unwrap();
    let img = Store::open(&d.0).unwrap().load().unwrap();
    assert_eq!(img.flows.keys().collect::<Vec<_>>(), ["k1", "k3"]);
}

#[test]
fn damaged_snapshot_names_itself_the_backup_and_the_journal() {
    let d = Dir::new("bad");
    let mut s = Store::open(&d.0).unwrap();
    fs::create_dir_all(&d.0).unwrap();
    fs::write(s.path(), "{\"version\": 2, \"ports\": [").unwrap();
    let e = s.load().unwrap_err().to_string();
    assert!(e.contains(&s.path().display().to_string()), "{e}");
    assert!(
        e.contains("state.json.bak") && e.contains("state.journal"),
        "{e}"
    );
    assert!(e.contains("will not start empty"), "{e}");
    fs::write(
        s.path(),
        "{\"version\": 9, \"ports\": [], \"groups\": [], \"flows\": []}",
    )
    .unwrap();
    assert!(matches!(
        s.load(),
        Err(StoreError::Version { found: 9, .. })
    ));
}

/// A state file written by the previous release (version 1, no journal) reads whole.
#[test]
fn the_previous_release_state_file_reads() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/state-v1/state.json");
    let d = Dir::new("v1");
    fs::create_dir_all(&d.0).unwrap();
    fs::copy(&fixture, d.0.join(STATE_FILE)).unwrap();
    let mut s = Store::open(&d.0).unwrap();
    let img = s.load().unwrap();
    assert_eq!(img.read_version, 1);
    let names: Vec<&str> = img.ports.values().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "vsw-tun0",
            "vsw-gw0",
            "web-a-fixture-",
            "dns-b-fixture-",
            "hand0",
            "hand1",
            "mem0"
        ]
    );
    let tun = &img.ports[&1];
    assert_eq!(tun.mac, None);
    assert_eq!(
        tun.tunnel.as_ref().map(|t| t.local),
        Some(Ipv4Addr::new(192, 0, 2, 10))
    );
    assert_eq!(
        tun.ip.map(|a| a.ip),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)))
    );
    assert_eq!(img.pods.len(), 2);
    let pod = &img.pods[&("fixture-a".to_string(), "eth0".to_string())];
    assert_eq!(pod.ip.to_string(), "10.244.1.2/24");
    assert_eq!(pod.mac.to_string(), "0a:58:0a:f4:01:02");
    assert_eq!(img.flows.len(), 3);
    assert_eq!(img.groups.keys().copied().collect::<Vec<_>>(), [7]);
    assert_eq!(
        img.network.as_ref().map(|n| n.pod_cidr.to_string()),
        Some("10.244.1.0/24".to_string())
    );
    let nodes: Vec<(&str, &str)> = img
        .v1_nodes
        .iter()
        .map(|n| (n.name.as_str(), n.source.as_str()))
        .collect();
    assert_eq!(
        nodes,
        [("fx-remote1", "vswitchctl"), ("fx-remote2", "manifest")]
    );
    // Written again in the new layout, it reads back the same.
    s.compact(&img).unwrap();
    let again = Store::open(&d.0).unwrap().load().unwrap();
    assert_eq!(again.ports, img.ports);
    assert_eq!(again.pods, img.pods);
    assert!(
        d.0.join(BACKUP_FILE).exists(),
        "the version-1 file is kept as the backup"
    );
}
