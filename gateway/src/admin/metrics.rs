//! `/metrics`: the gauges sampled per scrape (queue depths and ages, certificate expiry, store
//! size, open circuits) beside the counters and histograms recorded where things happen
//! (`crate::telemetry`, which names every metric).

use std::collections::HashSet;

use metrics::gauge;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::ctx::Ctx;
use crate::telemetry::{
    CERT_DAYS, CERT_EXPIRING, CIRCUIT_OPEN, DROP_OLDEST, DROP_REJECTED, DROP_WAITING, QUEUE_DEPTH, QUEUE_OLDEST,
    STORE_BYTES,
};

/// Label sets of queues set by the last scrape, so a queue that emptied drops to 0 instead of
/// going stale. Held for the whole scrape, so an older snapshot cannot overwrite a newer one.
static SEEN_QUEUES: tokio::sync::Mutex<Option<HashSet<(String, String, String)>>> = tokio::sync::Mutex::const_new(None);

/// Samples the gauges and renders the exposition text.
pub async fn render(ctx: &Ctx, handle: &PrometheusHandle) -> String {
    let now = crate::store::now_millis();
    let mut seen = SEEN_QUEUES.lock().await;
    if let Ok(queues) = ctx.store.queues().await {
        let mut current = HashSet::new();
        for q in queues {
            let key = (
                q.direction.as_str().to_owned(),
                q.partner_node.clone(),
                q.status.as_str().to_owned(),
            );
            let labels = [
                ("direction", key.0.clone()),
                ("partner", key.1.clone()),
                ("status", key.2.clone()),
            ];
            gauge!(QUEUE_DEPTH, &labels).set(q.depth as f64);
            gauge!(QUEUE_OLDEST, &labels).set(((now - q.oldest).max(0) as f64) / 1000.0);
            current.insert(key);
        }
        for (d, p, s) in seen.take().unwrap_or_default().difference(&current) {
            let labels = [("direction", d.clone()), ("partner", p.clone()), ("status", s.clone())];
            gauge!(QUEUE_DEPTH, &labels).set(0.0);
            gauge!(QUEUE_OLDEST, &labels).set(0.0);
        }
        *seen = Some(current);
    }
    // A file may hold several certificates (a chain, a bundle): the soonest expiry counts. The
    // list comes soonest first, so the first of each role and name is the one.
    let mut set = HashSet::new();
    let mut expiring: std::collections::BTreeMap<&str, u32> = crate::certs::ROLES.iter().map(|r| (*r, 0)).collect();
    for c in crate::certs::certificates(&ctx.live().certificates, &ctx.revocation) {
        if set.insert((c.role, c.name.clone())) {
            if c.days_left <= 30 {
                *expiring.entry(c.role).or_default() += 1;
            }
            gauge!(CERT_DAYS, "role" => c.role, "name" => c.name).set(c.days_left as f64);
        }
    }
    for (role, n) in expiring {
        gauge!(CERT_EXPIRING, "role" => role).set(f64::from(n));
    }
    if let Ok(bytes) = ctx.store.size().await {
        gauge!(STORE_BYTES).set(bytes as f64);
    }
    for p in &ctx.config().partners {
        let open = ctx.partners.health_of(&p.node).circuit != crate::health::Circuit::Closed;
        gauge!(CIRCUIT_OPEN, "partner" => p.node.clone()).set(if open { 1.0 } else { 0.0 });
    }
    for (client, _, s) in super::drop_summaries(ctx).await {
        gauge!(DROP_WAITING, "client" => client.clone()).set(s.waiting as f64);
        gauge!(DROP_OLDEST, "client" => client.clone()).set(s.oldest_age_seconds as f64);
        gauge!(DROP_REJECTED, "client" => client).set(s.rejected as f64);
    }
    with_instance(&handle.render(), &ctx.instance)
}

/// Adds `instance="…"` (the process's name) to every sample of an exposition text, so the
/// processes of one node are told apart and their counters summed. (The recorder is shared
/// by every node of an OS process, as in `demo`, so the label is added here, per node.)
fn with_instance(text: &str, instance: &str) -> String {
    let value = instance.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    for line in text.lines() {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        if line.starts_with('#') || line.is_empty() {
            out.push_str(line);
        } else if line[name_end..].starts_with('{') {
            out.push_str(&line[..=name_end]);
            out.push_str(&format!("instance=\"{value}\","));
            out.push_str(&line[name_end + 1..]);
        } else {
            out.push_str(&line[..name_end]);
            out.push_str(&format!("{{instance=\"{value}\"}}"));
            out.push_str(&line[name_end..]);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_sample_gets_the_instance_label() {
        let text = "# HELP x A.\n# TYPE x counter\nx 3\ny{a=\"1\"} 2\nz_bucket{le=\"+Inf\"} 1\n";
        assert_eq!(
            super::with_instance(text, "a@h:f#1"),
            "# HELP x A.\n# TYPE x counter\nx{instance=\"a@h:f#1\"} 3\ny{instance=\"a@h:f#1\",a=\"1\"} 2\n\
             z_bucket{instance=\"a@h:f#1\",le=\"+Inf\"} 1\n"
        );
        assert!(super::with_instance("x 1\n", "q\"").contains(r#"x{instance="q\""} 1"#));
    }
}
