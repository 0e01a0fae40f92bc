//! Adapters from manifests, end to end: the shipped manifests pass their conformance check
//! against `../shared/xoev`; the guide `docs/adapters.md` is followed step by step, and the
//! standard it adds (never seen by the gateway's code) travels through two real nodes; xdomea
//! and XJustiz route by their own headers; a legacy format is transformed on intake and back on
//! delivery.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{Net, bin, repo, shared};

const T: Duration = Duration::from_secs(30);

fn run(args: &[&str], cwd: &Path) -> (i32, String) {
    let out = Command::new(bin()).args(args).current_dir(cwd).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn xoev() -> String {
    shared().join("xoev").display().to_string()
}

const SHIPPED: &[&str] = &[
    "xumzug-1.0",
    "xbeteiligung-1.2",
    "xdomea-2.3.0",
    "xdomea-2.4.0",
    "xdomea-3.0.0",
    "xjustiz-3.4.1",
    "xinneres-5-rueckweisung",
    "xinneres-5-quittung",
    "xinneres-5-weiterleitung",
    "umzug-legacy",
];

#[test]
fn every_shipped_manifest_passes_its_conformance_check() {
    let mut args = vec!["adapter".to_owned(), "check".to_owned()];
    args.extend(
        SHIPPED
            .iter()
            .map(|m| repo().join("manifests").join(m).display().to_string()),
    );
    args.extend(["--xoev-root".to_owned(), xoev()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = run(&args, &repo());
    assert_eq!(code, 0, "{out}");
    // Every manifest directory in the project is in the list above.
    let mut on_disk: Vec<String> = std::fs::read_dir(repo().join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = SHIPPED.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    // The official samples: XBeteiligung 6/6, xdomea 12/12, XJustiz 1/1; our own invalid
    // fixtures for each; the legacy example round-trips.
    for summary in [
        "xbeteiligung-1.2: valid 6/6 (3 of them refused at intake: header type code), invalid 4/4",
        "xdomea-2.3.0: valid 4/4 (2 of them refused at intake: header type code), invalid 3/3",
        "xdomea-2.4.0: valid 4/4 (2 of them refused at intake: header type code), invalid 2/2",
        "xdomea-3.0.0: valid 4/4 (2 of them refused at intake: header type code), invalid 3/3",
        "xjustiz-3.4.1: valid 1/1, invalid 2/2",
        "xinneres-5-rueckweisung: valid 1/1, invalid 2/2",
        "xinneres-5-quittung: valid 1/1, invalid 2/2",
        "xinneres-5-weiterleitung: valid 1/1, invalid 2/2",
        "umzug-legacy: valid 3/3, invalid 1/1, round trips 3",
        "xumzug-1.0: valid 5/5, invalid 7/7",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(summary))
            .unwrap_or_else(|| panic!("no {summary:?} in:\n{out}"));
        assert!(line.ends_with("PASS"), "{line}");
    }
    // Header fields are extracted by each standard's own header mapping.
    for needle in [
        "(xdomea/3.0.0 Aussonderung.Aussonderung.0503); id ",
        "author AbsBehoerdenkennungPraefixCode:LATh, reader EmpBehoerdenkennungPraefixCode:LATh",
        "(xjustiz/3.4.1 nachricht.gds.uebermittlungSchriftgutobjekte.0005005); id 4f28f648-5bd7-22b5-7c14-fba1cee8e5de, type code -, author xjustiz:Digitalservice",
        "warning: intake would refuse it: header-invalid: header message type code 0401 does not match the root element kommunal.Aktualisieren.0402",
    ] {
        assert!(out.contains(needle), "no {needle:?} in:\n{out}");
    }
}

#[test]
fn a_broken_adapter_is_reported_not_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run(&["adapter", "new", "xkaputt-1.0"], dir.path());
    assert_eq!(code, 0, "{out}");
    let manifest = std::fs::read_to_string(dir.path().join("xkaputt-1.0/adapter.toml")).unwrap();
    assert!(manifest.contains("name = \"xkaputt-1.0\"") && manifest.contains("version = \"1.0\""));
    // The scaffold names a schema that does not exist yet.
    let (code, out) = run(&["adapter", "check", "xkaputt-1.0"], dir.path());
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("schema.entry:") && out.contains("does not exist"), "{out}");
    // A second scaffold of the same name is refused.
    let (code, out) = run(&["adapter", "new", "xkaputt-1.0"], dir.path());
    assert_eq!(code, 2, "{out}");
    // An import that no catalog maps is named.
    std::fs::write(
        dir.path().join("xkaputt-1.0/schema/xkaputt.xsd"),
        r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:example:xkaputt:1.0">
  <xs:import namespace="http://xoev.de/schemata/code/1_0" schemaLocation="http://xoev.de/schemata/code/1_0/xoev-code.xsd"/>
</xs:schema>"#,
    )
    .unwrap();
    let (code, out) = run(&["adapter", "check", "xkaputt-1.0"], dir.path());
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("http://xoev.de/schemata/code/1_0/xoev-code.xsd"), "{out}");
    // An adapter claiming the demo standard's roots would never see a message: refused.
    std::fs::write(
        dir.path().join("xkaputt-1.0/schema/xkaputt.xsd"),
        r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:poststelle:demo:xumzug:1.0"/>"#,
    )
    .unwrap();
    let manifest = dir.path().join("xkaputt-1.0/adapter.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("urn:example:xkaputt:1.0", "urn:poststelle:demo:xumzug:1.0"),
    )
    .unwrap();
    let (code, out) = run(&["adapter", "check", "xkaputt-1.0"], dir.path());
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("adapters xumzug-1.0 and xkaputt-1.0 both claim root elements"),
        "{out}"
    );
}

/// One fenced block of the guide: a file to write, or commands to run.
enum Step {
    File(String, String),
    Commands(Vec<String>),
}

fn guide_steps() -> Vec<Step> {
    let text = std::fs::read_to_string(repo().join("docs/adapters.md")).unwrap();
    let mut steps = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else { continue };
        let body: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("```")).collect();
        if let Some((_, file)) = info.split_once("file=") {
            steps.push(Step::File(file.trim().to_owned(), body.join("\n") + "\n"));
        } else if info.trim() == "sh" {
            steps.push(Step::Commands(
                body.iter()
                    .filter_map(|l| l.strip_prefix("$ poststelle "))
                    .map(str::to_owned)
                    .collect(),
            ));
        }
    }
    steps
}

/// Follows docs/adapters.md in a fresh folder: every file it shows is written and every command
/// it shows must succeed. Then the adapter it built — a standard the gateway's code has never
/// seen, with a remote import resolved through a catalog, an unqualified header with a separate
/// DVDV prefix and a pinned code list — is loaded by two real nodes, and its message travels.
#[tokio::test(flavor = "multi_thread")]
async fn the_guide_works_step_by_step() {
    let work = tempfile::tempdir().unwrap();
    let steps = guide_steps();
    let (mut files, mut commands) = (0, 0);
    for step in &steps {
        match step {
            Step::File(path, content) => {
                let p = work.path().join(path);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, content).unwrap();
                files += 1;
            }
            Step::Commands(lines) => {
                for line in lines {
                    let line = line.replace("../shared/xoev", &xoev());
                    let args: Vec<&str> = line.split_whitespace().collect();
                    let (code, out) = run(&args, work.path());
                    assert_eq!(code, 0, "poststelle {line}\n{out}");
                    if args[0] == "adapter" && args[1] == "check" {
                        assert!(
                            out.contains("xbehoerdenpost-2: valid 1/1, invalid 3/3, round trips 0, PASS"),
                            "{out}"
                        );
                        assert!(
                            out.contains("type code 0701, author psw:01003110, reader psw:09162000"),
                            "{out}"
                        );
                    }
                    if args[0] == "validate" && args.contains(&"--json") {
                        let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
                        assert_eq!(v["type"], "xbehoerdenpost/2 post.Anfrage.0701", "{out}");
                    }
                    commands += 1;
                }
            }
        }
    }
    assert!(
        files >= 8 && commands >= 4,
        "the guide lost its steps: {files} files, {commands} commands"
    );

    // The invalid fixture, through `validate`: one positioned line per error, exit 1.
    let bad = "xbehoerdenpost-2/fixtures/invalid/unbekanntes-anliegen.xml";
    let (code, out) = run(
        &[
            "validate",
            "--adapters",
            "xbehoerdenpost-2",
            "--xoev-root",
            &xoev(),
            bad,
        ],
        work.path(),
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with(&format!(
            "{bad}:9:3: schema-invalid: Element 'anliegen': the code is not in code list"
        )),
        "{out}"
    );

    let adapter = work.path().join("xbehoerdenpost-2");
    let net = Net::init(2);
    for i in 0..2 {
        net.use_adapters(i, std::slice::from_ref(&adapter));
    }
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let (ca, cb) = (net.client(0), net.client(1));
    let message = std::fs::read(adapter.join("fixtures/valid/anfrage.xml")).unwrap();
    let (status, v) = ca.submit(&message).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let inbox = cb.wait_inbox(1, T).await;
    assert_eq!(cb.get_bytes(&format!("/v1/inbox/{}", inbox[0])).await.1, message);
    assert_eq!(cb.ack(&inbox[0]).await, 200);
    let view = ca.wait_status(&id, "delivered", T).await;
    assert_eq!(view["message_type"], "xbehoerdenpost/2 post.Anfrage.0701");
    assert_eq!(view["xoev_uuid"], "0b8e2f3c-6f0e-4a1e-9a55-3d1f0c2b7a10");

    // The node applies the pinned code list like the schema: 422, positioned.
    let bad = std::fs::read(work.path().join(bad)).unwrap();
    let (status, v) = ca.submit(&bad).await;
    assert_eq!((status, v["code"].as_str()), (422, Some("schema-invalid")), "{v}");
    assert_eq!(
        (v["errors"][0]["line"].as_u64(), v["errors"][0]["column"].as_u64()),
        (Some(9), Some(3)),
        "{v}"
    );
}

/// Renames the two nodes' authorities (and their clients') to the ones a sample names.
fn rename_authorities(net: &Net, a: &str, b: &str) {
    for i in 0..2 {
        net.edit_config(i, |t| t.replace("psw:01003110", a).replace("psw:09162000", b));
    }
}

fn xdomea_sample(version: &str, file: &str) -> Vec<u8> {
    std::fs::read(shared().join(format!(
        "xoev/xdomea/message_generation/pattern/xdomea_{version}/xx_Aussonderung.{file}.xml"
    )))
    .unwrap()
}

/// xdomea routes by its `Kopf`: author and reader from Behoerdenkennung with the separate
/// Praefix, the message id derived from the process id and the message — so three messages of
/// one process (two versions) are three messages, and each reaches the reader's node.
#[tokio::test(flavor = "multi_thread")]
async fn xdomea_routes_by_its_own_header_between_nodes() {
    let net = Net::init(2);
    rename_authorities(
        &net,
        "AbsBehoerdenkennungPraefixCode:LATh",
        "EmpBehoerdenkennungPraefixCode:LATh",
    );
    let dirs = [
        repo().join("manifests/xdomea-3.0.0"),
        repo().join("manifests/xdomea-2.4.0"),
    ];
    for i in 0..2 {
        net.use_adapters(i, &dirs);
    }
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let (ca, cb) = (net.client(0), net.client(1));
    let sent = [
        (
            xdomea_sample("3.0.0", "Anbieteverzeichnis.0501"),
            "xdomea/3.0.0 Aussonderung.Anbieteverzeichnis.0501",
        ),
        (
            xdomea_sample("3.0.0", "Aussonderung.0503"),
            "xdomea/3.0.0 Aussonderung.Aussonderung.0503",
        ),
        (
            xdomea_sample("2.4.0", "Aussonderung.0503"),
            "xdomea/2.4.0 Aussonderung.Aussonderung.0503",
        ),
    ];
    let mut ids = Vec::new();
    for (bytes, _) in &sent {
        let (status, v) = ca.submit(bytes).await;
        assert_eq!(status, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let inbox = cb.wait_inbox(3, T).await;
    let mut received = Vec::new();
    for id in &inbox {
        received.push(cb.get_bytes(&format!("/v1/inbox/{id}")).await.1);
        assert_eq!(cb.ack(id).await, 200);
    }
    let mut uuids = Vec::new();
    for ((bytes, message_type), id) in sent.iter().zip(&ids) {
        assert!(received.contains(bytes), "{message_type} did not arrive unchanged");
        let view = ca.wait_status(id, "delivered", T).await;
        assert_eq!(view["message_type"], *message_type);
        uuids.push(view["xoev_uuid"].as_str().unwrap().to_owned());
    }
    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), 3, "one process, three messages, three ids");
    // A sample whose Kopf names another message type is refused at intake.
    let (status, v) = ca.submit(&xdomea_sample("3.0.0", "Bewertungsverzeichnis.0502")).await;
    assert_eq!((status, v["code"].as_str()), (422, Some("header-invalid")), "{v}");
}

/// XJustiz routes by its `nachrichtenkopf`: sender and recipient from the choice of court or
/// other party, given the prefix `xjustiz` by the manifest; the id is `eigeneNachrichtenID`.
#[tokio::test(flavor = "multi_thread")]
async fn xjustiz_routes_by_its_own_header_between_nodes() {
    let net = Net::init(2);
    rename_authorities(&net, "xjustiz:Digitalservice", "xjustiz:Landgericht");
    for i in 0..2 {
        net.use_adapters(i, &[repo().join("manifests/xjustiz-3.4.1")]);
    }
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let (ca, cb) = (net.client(0), net.client(1));
    // The public sample names one party as both sender and recipient; here it writes to a court.
    let sample = std::fs::read_to_string(shared().join("xoev/xjustiz/3.4.1/examples/xjustiz_nachricht.xml")).unwrap();
    let message = sample.replace(
        "<tns:empfaenger.sonstige>Digitalservice</tns:empfaenger.sonstige>",
        "<tns:empfaenger.sonstige>Landgericht</tns:empfaenger.sonstige>",
    );
    assert_ne!(message, sample);
    let (status, v) = ca.submit(message.as_bytes()).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let inbox = cb.wait_inbox(1, T).await;
    assert_eq!(
        cb.get_bytes(&format!("/v1/inbox/{}", inbox[0])).await.1,
        message.as_bytes()
    );
    assert_eq!(cb.ack(&inbox[0]).await, 200);
    let view = ca.wait_status(&id, "delivered", T).await;
    assert_eq!(
        view["message_type"],
        "xjustiz/3.4.1 nachricht.gds.uebermittlungSchriftgutobjekte.0005005"
    );
    assert_eq!(view["xoev_uuid"], "4f28f648-5bd7-22b5-7c14-fba1cee8e5de");
    // Addressed to a party no partner serves: refused by its own header.
    let elsewhere = message.replace(">Landgericht<", ">Amtsgericht<");
    let (status, v) = ca.submit(elsewhere.as_bytes()).await;
    assert_eq!((status, v["code"].as_str()), (422, Some("unknown-recipient")), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("xjustiz:Amtsgericht"), "{v}");
}

fn legacy(name: &str) -> PathBuf {
    repo().join("manifests/umzug-legacy/fixtures/valid").join(name)
}

/// The worked example: a legacy system sends its flat format, the node maps it to XUmzug on
/// intake (that is what travels), and the receiving client, configured with
/// `deliver_as = "umzug-legacy"`, gets it back in the flat format.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_format_is_transformed_on_intake_and_back_on_delivery() {
    let net = Net::init(2);
    for i in 0..2 {
        net.use_adapters(i, &[repo().join("manifests/umzug-legacy")]);
    }
    // The Fortschreibung goes from b (the new registration office) back to a.
    net.edit_config(0, |t| {
        let client = "name = \"fachverfahren-a\"\n";
        assert!(t.contains(client));
        t.replace(client, &format!("{client}deliver_as = \"umzug-legacy\"\n"))
    });
    let _a = net.start(0).await;
    let _b = net.start(1).await;
    let (ca, cb) = (net.client(1), net.client(0));
    let original = std::fs::read(legacy("fortschreibung-umlaute-eszett.xml")).unwrap();
    let (status, v) = ca.submit(&original).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    let inbox = cb.wait_inbox(1, T).await;
    let delivered = cb.get_bytes(&format!("/v1/inbox/{}", inbox[0])).await.1;
    let normalise = |b: &[u8]| String::from_utf8_lossy(b).trim_end().to_owned();
    assert_eq!(
        normalise(&delivered),
        normalise(&original),
        "the legacy client gets its own format back"
    );
    assert_eq!(cb.ack(&inbox[0]).await, 200);
    let view = ca.wait_status(&id, "delivered", T).await;
    assert_eq!(
        view["message_type"], "xumzug/1.0 umzug.Fortschreibung.0102",
        "XUmzug travelled, not the legacy format"
    );

    // A legacy message the stylesheet cannot map: a clear transform-failed problem naming the field.
    let text = String::from_utf8(std::fs::read(legacy("widerspruch-max-mustermann.xml")).unwrap()).unwrap();
    let start = text
        .find("<BezugID>")
        .expect("the Widerspruch fixture refers to a message");
    let end = text.find("</BezugID>").unwrap() + "</BezugID>".len();
    let broken = format!("{}{}", &text[..start], &text[end..]);
    let (status, v) = ca.submit(broken.as_bytes()).await;
    assert_eq!((status, v["code"].as_str()), (422, Some("transform-failed")), "{v}");
    assert!(v["detail"].as_str().unwrap().contains("BezugID"), "{v}");
}
