//! No schema is ever fetched from the network: remote `schemaLocation`s resolve through XML
//! catalogs to local files or not at all, and instance documents cannot point the validator
//! elsewhere.
//!
//! A local TCP listener stands in for the remote host; every test asserts that it saw no
//! connection. Schemas are written to temp dirs, each compile under its own entry path (the
//! compiled-schema cache is per thread and keyed by entry path).

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use adapters::SchemaSet;
use gateway::xml::validate::{Failure, compile_on_this_thread, validate_on_this_thread};

/// A listener on 127.0.0.1 that counts the connections made to it, and closes each at once so
/// that a client that did connect fails fast instead of waiting for an answer.
struct Trap {
    port: u16,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Trap {
    fn start() -> Trap {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (hits, stop) = (hits.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            hits.fetch_add(1, Ordering::SeqCst);
                            drop(stream);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Trap {
            port,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, scheme: &str, file: &str) -> String {
        format!("{scheme}://127.0.0.1:{}/{file}", self.port)
    }

    /// Connections seen, after giving a late client time to arrive.
    fn connections(&self) -> usize {
        std::thread::sleep(Duration::from_millis(300));
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn set(entry: PathBuf, catalogs: Vec<PathBuf>) -> SchemaSet {
    SchemaSet { entry, catalogs }
}

/// An entry schema (namespace `urn:x`) whose `doc` element holds one `r:item` from the schema at
/// `remote_url` (namespace `urn:remote`).
fn importing_entry(remote_url: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:x="urn:x" xmlns:r="urn:remote"
           targetNamespace="urn:x" elementFormDefault="qualified">
  <xs:import namespace="urn:remote" schemaLocation="{remote_url}"/>
  <xs:element name="doc">
    <xs:complexType>
      <xs:sequence>
        <xs:element ref="r:item"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
</xs:schema>
"#
    )
}

/// The schema served "remotely": `item` is a positive integer.
const REMOTE_XSD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:remote"
           elementFormDefault="qualified">
  <xs:element name="item" type="xs:positiveInteger"/>
</xs:schema>
"#;

const VALID_DOC: &str = r#"<x:doc xmlns:x="urn:x" xmlns:r="urn:remote"><r:item>5</r:item></x:doc>"#;
const INVALID_DOC: &str = r#"<x:doc xmlns:x="urn:x" xmlns:r="urn:remote"><r:item>0</r:item></x:doc>"#;

/// A catalog in `dir` that maps `remote_url` to `local/remote.xsd`, which it also writes.
fn catalog_for(dir: &Path, remote_url: &str) -> PathBuf {
    write(dir, "local/remote.xsd", REMOTE_XSD);
    write(
        dir,
        "catalog.xml",
        &format!(
            r#"<?xml version="1.0"?>
<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog">
  <uri name="{remote_url}" uri="local/remote.xsd"/>
</catalog>
"#
        ),
    )
}

#[test]
fn trap_counts_connections() {
    // The zero-connection assertions below mean something only if the trap sees a connection.
    let trap = Trap::start();
    drop(TcpStream::connect(("127.0.0.1", trap.port)).expect("connect to the trap"));
    assert_eq!(trap.connections(), 1);
}

#[test]
fn remote_schema_location_is_never_fetched() {
    let trap = Trap::start();
    let dir = tempfile::tempdir().unwrap();

    // xs:import over http.
    let remote = trap.url("http", "remote.xsd");
    let entry = write(dir.path(), "import/entry.xsd", &importing_entry(&remote));
    let err = compile_on_this_thread(&set(entry.clone(), Vec::new()))
        .expect_err("an unmapped remote import must not compile");
    assert!(err.contains(&remote), "error does not name {remote}: {err}");
    assert!(err.contains("never fetched"), "{err}");
    // Validation reports the broken schema set, not a verdict on the document.
    assert!(matches!(
        validate_on_this_thread(&set(entry, Vec::new()), VALID_DOC.as_bytes()),
        Err(Failure::SchemaUnavailable(e)) if e.contains(&remote)
    ));

    // xs:include over https.
    let inc = trap.url("https", "inc.xsd");
    let entry = write(
        dir.path(),
        "include/entry.xsd",
        &format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:x="urn:x"
           targetNamespace="urn:x" elementFormDefault="qualified">
  <xs:include schemaLocation="{inc}"/>
  <xs:element name="doc" type="x:IncludedType"/>
</xs:schema>
"#
        ),
    );
    let err = compile_on_this_thread(&set(entry, Vec::new())).expect_err("an unmapped remote include must not compile");
    assert!(err.contains(&inc), "error does not name {inc}: {err}");

    assert_eq!(
        trap.connections(),
        0,
        "the validator connected to the remote schema host"
    );
}

#[test]
fn catalog_maps_remote_location_to_local_file() {
    let trap = Trap::start();
    let dir = tempfile::tempdir().unwrap();
    let remote = trap.url("http", "remote.xsd");
    let catalog = catalog_for(dir.path(), &remote);
    let entry = write(dir.path(), "entry.xsd", &importing_entry(&remote));
    let schemas = set(entry, vec![catalog]);

    compile_on_this_thread(&schemas).unwrap_or_else(|e| panic!("mapped import does not compile: {e}"));
    assert_eq!(validate_on_this_thread(&schemas, VALID_DOC.as_bytes()), Ok(()));
    // The local copy's type really is in force: 0 is not a positive integer.
    match validate_on_this_thread(&schemas, INVALID_DOC.as_bytes()) {
        Err(Failure::SchemaInvalid(d)) => assert!(!d.is_empty() && d[0].line == Some(1), "{d:?}"),
        other => panic!("expected SchemaInvalid, got {other:?}"),
    }

    assert_eq!(
        trap.connections(),
        0,
        "the validator connected to the remote schema host"
    );
}

#[test]
fn xoev_catalog_resolves_real_remote_imports() {
    let bibliothek = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/xoev/xoev-bibliothek");
    let catalog = bibliothek.join("catalog.xml");
    assert!(catalog.is_file(), "missing {}", catalog.display());
    assert!(bibliothek.join("xoev-code.xsd").is_file());

    const URL: &str = "http://xoev.de/schemata/code/1_0/xoev-code.xsd";
    let xsd = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xoev-code="http://xoev.de/schemata/code/1_0"
           targetNamespace="urn:poststelle:test:code" elementFormDefault="qualified">
  <xs:import namespace="http://xoev.de/schemata/code/1_0" schemaLocation="{URL}"/>
  <xs:element name="eintrag" type="xoev-code:Code"/>
</xs:schema>
"#
    );
    let dir = tempfile::tempdir().unwrap();

    let with = set(write(dir.path(), "with-catalog/codes.xsd", &xsd), vec![catalog]);
    compile_on_this_thread(&with).unwrap_or_else(|e| panic!("does not compile with the XÖV catalog: {e}"));
    let valid = r#"<t:eintrag xmlns:t="urn:poststelle:test:code" listURI="urn:de:example:liste" listVersionID="1"><code>01</code><name>eins</name></t:eintrag>"#;
    assert_eq!(validate_on_this_thread(&with, valid.as_bytes()), Ok(()));
    // xoev-code:Code requires its code element.
    let invalid = r#"<t:eintrag xmlns:t="urn:poststelle:test:code"><name>eins</name></t:eintrag>"#;
    assert!(matches!(
        validate_on_this_thread(&with, invalid.as_bytes()),
        Err(Failure::SchemaInvalid(_))
    ));

    let without = set(write(dir.path(), "without-catalog/codes.xsd", &xsd), Vec::new());
    let err = compile_on_this_thread(&without).expect_err("must not compile without a catalog");
    assert!(err.contains(URL), "error does not name {URL}: {err}");
}

#[test]
fn instance_schema_location_hint_is_ignored() {
    let trap = Trap::start();
    let dir = tempfile::tempdir().unwrap();
    let remote = trap.url("http", "remote.xsd");
    let catalog = catalog_for(dir.path(), &remote);
    let schemas = set(write(dir.path(), "entry.xsd", &importing_entry(&remote)), vec![catalog]);
    compile_on_this_thread(&schemas).unwrap_or_else(|e| panic!("mapped import does not compile: {e}"));

    let other = trap.url("http", "other.xsd");
    for doc in [
        format!(
            r#"<x:doc xmlns:x="urn:x" xmlns:r="urn:remote" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:schemaLocation="urn:x {other} urn:remote {other}"><r:item>5</r:item></x:doc>"#
        ),
        format!(
            r#"<x:doc xmlns:x="urn:x" xmlns:r="urn:remote" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:noNamespaceSchemaLocation="{other}"><r:item>5</r:item></x:doc>"#
        ),
    ] {
        assert_eq!(validate_on_this_thread(&schemas, doc.as_bytes()), Ok(()), "{doc}");
    }
    assert_eq!(
        trap.connections(),
        0,
        "the validator followed an instance's schema location hint"
    );
}
