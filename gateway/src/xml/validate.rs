//! Schema validation with libxml2 on a small pool of threads.
//!
//! libxml2's compiled schemas are not `Send`, so each pool thread keeps its own cache of compiled
//! schema sets (keyed by entry file) and async code hands it jobs over a bounded channel. A full
//! channel is answered at once with `overloaded` instead of queueing without bound. A caller
//! whose next step reads the same document (a signature check) hands it over with
//! [`ValidatorPool::validate_then`]: it runs on the parsed tree, on the same thread, so the
//! document is parsed once. The same synchronous [`validate_on_this_thread`] serves the
//! offline CLI.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, Mutex, mpsc};

use adapters::SchemaSet;
use libxml::parser::{Parser, XmlParseFailure};
use libxml::schemas::{SchemaParserContext, SchemaValidationContext};
use libxml::tree::Document;
use tokio::sync::oneshot;

use super::catalog::Catalog;
use super::libxml as ffi;
use crate::problem::{Code, Diagnostic, Problem};

/// Why a document failed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// libxml2 could not parse the document.
    NotWellFormed(Vec<Diagnostic>),
    /// The document parsed but is not valid against the schema.
    SchemaInvalid(Vec<Diagnostic>),
    /// The schema set itself did not compile (a node setup error, not the client's fault).
    SchemaUnavailable(String),
}

impl Failure {
    pub fn into_problem(self) -> Problem {
        match self {
            Failure::NotWellFormed(d) => {
                Problem::new(Code::NotWellFormed, summary("the document is not well-formed", &d)).with_errors(d)
            }
            Failure::SchemaInvalid(d) => {
                Problem::new(Code::SchemaInvalid, summary("the document is not schema-valid", &d)).with_errors(d)
            }
            Failure::SchemaUnavailable(e) => Problem::new(Code::Internal, format!("schema unavailable: {e}")),
        }
    }
}

fn summary(what: &str, d: &[Diagnostic]) -> String {
    match d.first() {
        Some(Diagnostic {
            line: Some(l),
            column,
            message,
        }) => format!("{what}: line {l}, column {}: {message}", column.unwrap_or(0)),
        Some(first) => format!("{what}: {}", first.message),
        None => what.to_owned(),
    }
}

type Compiled = Rc<RefCell<SchemaValidationContext>>;

thread_local! {
    /// This thread's compiled schema sets, by entry file. Failed compiles are cached too, so a
    /// broken schema costs one compile, not one per message.
    static SCHEMAS: RefCell<HashMap<PathBuf, Result<Compiled, String>>> = RefCell::new(HashMap::new());
}

/// Compiles a schema set on this thread (cached). `Err` names every problem, including each
/// remote URL that no catalog maps.
pub fn compile_on_this_thread(set: &SchemaSet) -> Result<(), String> {
    compiled(set).map(|_| ())
}

fn compiled(set: &SchemaSet) -> Result<Compiled, String> {
    if let Some(hit) = SCHEMAS.with(|s| s.borrow().get(&set.entry).cloned()) {
        return hit;
    }
    let result = compile(set);
    SCHEMAS.with(|s| s.borrow_mut().insert(set.entry.clone(), result.clone()));
    result
}

fn compile(set: &SchemaSet) -> Result<Compiled, String> {
    ffi::init();
    if !set.entry.is_file() {
        return Err(format!("schema file {} does not exist", set.entry.display()));
    }
    let catalog = Catalog::load(&set.catalogs)?;
    ffi::set_catalog(catalog);
    ffi::take_refused();
    let path = set.entry.to_string_lossy();
    let mut parser = SchemaParserContext::from_file(&path);
    let result = SchemaValidationContext::from_parser(&mut parser);
    let refused = ffi::take_refused();
    ffi::set_catalog(Catalog::default());
    if !refused.is_empty() {
        return Err(format!(
            "schema {} imports remote resources that no XML catalog maps to a local file (never fetched): {}",
            set.entry.display(),
            refused.join(", ")
        ));
    }
    match result {
        Ok(ctx) => Ok(Rc::new(RefCell::new(ctx))),
        Err(errors) => Err(format!(
            "schema {} does not compile: {}",
            set.entry.display(),
            errors
                .iter()
                .take(5)
                .map(|e| {
                    format!(
                        "{}:{}: {}",
                        e.filename.as_deref().unwrap_or("?"),
                        e.line.unwrap_or(0),
                        e.message.as_deref().unwrap_or("").trim()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}

fn diagnostics(errors: &[libxml::error::StructuredError]) -> Vec<Diagnostic> {
    errors
        .iter()
        .map(|e| Diagnostic {
            line: e.line.filter(|l| *l > 0).map(|l| l as u32),
            column: e.col.filter(|c| *c > 0).map(|c| c as u32),
            message: clip(&redact_values(e.message.as_deref().unwrap_or("").trim())),
        })
        .collect()
}

/// How a quoted value ends in libxml2's schema messages (the quote, then the message goes on).
const QUOTE_ENDS: &[&str] = &[
    "' does not match",
    "' must be",
    "' of simple type",
    "' is not valid",
    "' is not a valid value",
    "' is not accepted",
    "' is not an element of the set",
    "' has a length",
    "' has more",
    "' has no corresponding",
    "' is less than",
    "' is greater than",
    "' is not facet-valid",
];

/// Where libxml2 quotes a value from the document: the start, what replaces start and value,
/// and how the value ends. `value '` covers "The value", "The actual value", "The initial
/// value", "The QName value".
const VALUE_STARTS: [(&str, &str, &[&str]); 3] = [
    ("value '", "value", QUOTE_ENDS),
    ("': '", "': the value", QUOTE_ENDS),
    ("key-sequence [", "key-sequence", &["] in ", "] of "]),
];

/// libxml2 quotes the offending value in schema errors ("'Erika' is not a valid value of the
/// atomic type …", "The value 'Erika' is not accepted by the pattern …"). That is message
/// content, possibly personal data, which must reach no answer, store, log or partner: the value
/// is cut out (line and column still point at it). The value ends at the last end marker of its
/// start's kind, so a value containing a marker is cut whole; a start without a known end cuts
/// the rest of the message.
pub fn redact_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    loop {
        let Some((at, start, replacement, ends)) = VALUE_STARTS
            .iter()
            .filter_map(|(start, replacement, ends)| rest.find(start).map(|at| (at, *start, *replacement, *ends)))
            .min_by_key(|(at, ..)| *at)
        else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..at]);
        out.push_str(replacement);
        let value = &rest[at + start.len()..];
        match ends.iter().filter_map(|e| value.rfind(e)).max() {
            // Keep the end marker without its quote or bracket: " is not a valid value …".
            Some(i) => rest = &value[i + 1..],
            None => {
                out.push_str(" (not shown)");
                return out;
            }
        }
    }
}

/// Longest diagnostic message passed on; libxml2 quotes whole patterns (DIN 91379: ~1 KB).
const MAX_MESSAGE: usize = 300;

fn clip(s: &str) -> String {
    let s: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if s.chars().count() <= MAX_MESSAGE {
        s
    } else {
        format!("{}…", s.chars().take(MAX_MESSAGE).collect::<String>())
    }
}

/// Parses and validates `xml` against `set` on the calling thread.
pub fn validate_on_this_thread(set: &SchemaSet, xml: &[u8]) -> Result<(), Failure> {
    parse_valid(set, xml).map(drop)
}

/// The parsed document, if it is valid against `set`.
fn parse_valid(set: &SchemaSet, xml: &[u8]) -> Result<Document, Failure> {
    let ctx = compiled(set).map_err(Failure::SchemaUnavailable)?;
    let options = crate::xml::parser_options();
    let doc = match Parser::default().parse_string_with_diagnostics(xml, options) {
        Ok((doc, _warnings)) => doc,
        Err(XmlParseFailure::ParseFailed(errors)) => return Err(Failure::NotWellFormed(diagnostics(&errors))),
        Err(other) => {
            return Err(Failure::NotWellFormed(vec![Diagnostic {
                line: None,
                column: None,
                message: format!("{other:?}"),
            }]));
        }
    };
    let mut ctx = ctx.borrow_mut();
    ctx.validate_document(&doc)
        .map_err(|errors| Failure::SchemaInvalid(diagnostics(&errors)))?;
    Ok(doc)
}

/// What a validation thread does with a job's outcome: the parsed document if it is valid
/// (the caller's next step runs on it there), else the failure; and then answers the caller.
type Then = Box<dyn FnOnce(Result<Document, Failure>) + Send>;

struct Job {
    schema: Arc<SchemaSet>,
    xml: Arc<[u8]>,
    then: Then,
}

/// A pool of validation threads. Cloning shares the pool.
#[derive(Clone)]
pub struct ValidatorPool {
    tx: mpsc::SyncSender<Job>,
}

impl std::fmt::Debug for ValidatorPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ValidatorPool")
    }
}

impl ValidatorPool {
    /// Starts `threads` validation threads with a queue of `capacity` waiting jobs, and compiles
    /// `warm` schema sets on every thread first; any compile error is returned before the pool
    /// serves anything, so a node with a broken adapter does not start.
    pub fn start(threads: usize, capacity: usize, warm: &[SchemaSet]) -> Result<ValidatorPool, String> {
        let (tx, rx) = mpsc::sync_channel::<Job>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        let mut ready = Vec::new();
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let warm = warm.to_vec();
            let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
            ready.push(ready_rx);
            std::thread::Builder::new()
                .name(format!("xsd-{i}"))
                .spawn(move || {
                    ffi::init();
                    let warmed = warm.iter().try_for_each(compile_on_this_thread);
                    let ok = warmed.is_ok();
                    let _ = ready_tx.send(warmed);
                    if !ok {
                        return;
                    }
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let Job { schema, xml, then } = job;
                        // A panic (in a caller's step) costs that job its answer — the caller
                        // sees the thread stop — not the pool its thread.
                        let run = std::panic::AssertUnwindSafe(move || then(parse_valid(&schema, &xml)));
                        if std::panic::catch_unwind(run).is_err() {
                            tracing::error!("a validation job panicked");
                        }
                    }
                })
                .map_err(|e| format!("cannot start validation thread: {e}"))?;
        }
        for r in ready {
            r.recv().map_err(|_| "validation thread died".to_owned())??;
        }
        Ok(ValidatorPool { tx })
    }

    /// Validates on the pool. `Err(Problem overloaded)` when the queue is full.
    pub async fn validate(&self, schema: Arc<SchemaSet>, xml: Arc<[u8]>) -> Result<Result<(), Failure>, Problem> {
        self.validate_then(schema, xml, |_: &Document| ()).await
    }

    /// Validates on the pool and, if the document is valid, runs `then` on its parsed tree on
    /// the same thread (libxml2's trees are not `Send`): one parse for both steps. `then`'s
    /// answer comes back as the inner `Ok`.
    pub async fn validate_then<R, F>(
        &self,
        schema: Arc<SchemaSet>,
        xml: Arc<[u8]>,
        then: F,
    ) -> Result<Result<R, Failure>, Problem>
    where
        R: Send + 'static,
        F: FnOnce(&Document) -> R + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let then: Then = Box::new(move |parsed| {
            let _ = reply.send(parsed.map(|doc| then(&doc)));
        });
        self.tx.try_send(Job { schema, xml, then }).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => Problem::overloaded(1),
            mpsc::TrySendError::Disconnected(_) => Problem::new(Code::Internal, "validation pool stopped"),
        })?;
        rx.await
            .map_err(|_| Problem::new(Code::Internal, "validation thread stopped"))
    }
}

#[cfg(test)]
mod tests {
    use super::{Failure, SchemaSet, ValidatorPool, redact_values};
    use std::sync::Arc;

    #[tokio::test]
    async fn a_step_runs_on_the_valid_tree_and_a_panic_in_it_spares_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("n.xsd");
        std::fs::write(
            &entry,
            r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><xs:element name="n" type="xs:int"/></xs:schema>"#,
        )
        .unwrap();
        let set = SchemaSet {
            entry,
            catalogs: vec![],
        };
        // One thread: had the panic ended it, the last call would find the pool stopped.
        let pool = ValidatorPool::start(1, 4, std::slice::from_ref(&set)).unwrap();
        let set = Arc::new(set);
        let root = |doc: &libxml::tree::Document| doc.get_root_element().map(|r| r.get_content());
        let valid = pool.validate_then(set.clone(), Arc::from(&b"<n>7</n>"[..]), root).await;
        assert_eq!(valid.unwrap().unwrap().as_deref(), Some("7"));
        let invalid = pool.validate_then(set.clone(), Arc::from(&b"<n>x</n>"[..]), root).await;
        assert!(matches!(invalid.unwrap(), Err(Failure::SchemaInvalid(_))));
        let panicked = pool
            .validate_then(set.clone(), Arc::from(&b"<n>7</n>"[..]), |_| -> () {
                panic!("a step failed")
            })
            .await;
        assert!(panicked.is_err(), "the caller learns its step did not finish");
        let after = pool.validate(set, Arc::from(&b"<n>8</n>"[..])).await;
        assert_eq!(after.unwrap(), Ok(()));
    }

    #[test]
    fn values_quoted_by_libxml2_are_cut_out() {
        let cases = [
            (
                "Element '{urn:x}geburtsdatum': 'Quirin Zwetschgenbaum' is not a valid value of the atomic type 'xs:date'.",
                "Element '{urn:x}geburtsdatum': the value is not a valid value of the atomic type 'xs:date'.",
            ),
            (
                "Element 'plz': [facet 'pattern'] The value 'Zwetschgen's' is not accepted by the pattern '[0-9]{5}'.",
                "Element 'plz': [facet 'pattern'] The value is not accepted by the pattern '[0-9]{5}'.",
            ),
            (
                "Element 'art': [facet 'enumeration'] The value 'Quirin' is not an element of the set {'a', 'b'}.",
                "Element 'art': [facet 'enumeration'] The value is not an element of the set {'a', 'b'}.",
            ),
            (
                "Element 'n', attribute 'id': 'Quirin' is not a valid value of the atomic type 'xs:ID'.",
                "Element 'n', attribute 'id': the value is not a valid value of the atomic type 'xs:ID'.",
            ),
            (
                "Element 'n': [facet 'maxLength'] The value 'Quirin' has a length of '6'; this exceeds the allowed maximum length of '5'.",
                "Element 'n': [facet 'maxLength'] The value has a length of '6'; this exceeds the allowed maximum length of '5'.",
            ),
            (
                "Element 'k': Duplicate key-sequence ['Quirin'] in unique identity-constraint 'u'.",
                "Element 'k': Duplicate key-sequence in unique identity-constraint 'u'.",
            ),
            (
                "Element 'x': The value 'Quirin' does something new.",
                "Element 'x': The value (not shown)",
            ),
            (
                "Element '{urn:x}extra': This element is not expected.",
                "Element '{urn:x}extra': This element is not expected.",
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(redact_values(raw), want);
        }
    }
}
