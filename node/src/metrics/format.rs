//! The two text formats `GET /metrics` speaks, chosen by the scraper's `Accept` header.
//!
//! [`crate::metrics::Metrics::render`] writes OpenMetrics 1.0 (what `prometheus-client`
//! encodes): a counter family is named without `_total` while its samples carry it, and the text
//! ends with `# EOF`. Served as that ([`OPENMETRICS_CONTENT_TYPE`]) to a scraper that asks for
//! it, as Prometheus does by default. Everyone else (`promtool check metrics`, `curl`, older
//! scrapers) gets the Prometheus text format 0.0.4 ([`PROMETHEUS_TEXT_CONTENT_TYPE`]), made by
//! [`to_prometheus_text`]: there a counter's `# HELP` and `# TYPE` name its samples (`_total`),
//! a type 0.0.4 lacks (`unknown`, `info`, `stateset`, …) is `untyped`, and there is no `# UNIT`
//! or `# EOF`. Samples (names, labels, values)
//! are the same in both, so a dashboard sees the same series either way.
//!
//! Invariant: the body always is what its `Content-Type` says.

/// The `Content-Type` of OpenMetrics 1.0 text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The `Content-Type` of the Prometheus text format 0.0.4.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header value asks for OpenMetrics text (with a quality above 0).
pub fn accepts_openmetrics(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let refused = parts.any(|param| {
            param
                .split_once('=')
                .is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("q") && is_zero(v.trim()))
        });
        media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
    })
}

/// A quality value of 0 (`0`, `0.0`, `0.000`).
fn is_zero(q: &str) -> bool {
    q.parse::<f32>().is_ok_and(|q| q <= 0.0)
}

/// OpenMetrics 1.0 text as written by `prometheus-client`, rewritten as the Prometheus text
/// format 0.0.4 (see the module docs).
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // The counter families, found first: a family's `# HELP` comes before its `# TYPE`.
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, kind)| kind.trim() == "counter")
        .map(|(name, _)| name)
        .collect();
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match described {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) && !name.ends_with("_total") {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(match tail {
                    // Types both formats have.
                    _ if prefix == "# HELP " => tail,
                    "counter" | "gauge" | "histogram" | "summary" => tail,
                    // `unknown`, and OpenMetrics' own types (the node registers none).
                    _ => "untyped",
                });
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_is_chosen_only_when_asked_for() {
        // What Prometheus 2.x sends by default.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(accepts_openmetrics(prometheus));
        assert!(accepts_openmetrics("Application/OpenMetrics-Text"));
        for other in [
            "",
            "*/*",
            "text/plain",
            "text/plain;version=0.0.4",
            "application/openmetrics-text;q=0",
            "application/openmetrics-text; q=0.0, text/plain",
        ] {
            assert!(!accepts_openmetrics(other), "{other}");
        }
    }

    #[test]
    fn counters_are_named_with_total_and_the_openmetrics_lines_go() {
        let openmetrics = "# HELP licet_bytes_in Chunk bytes received from peers.\n\
                           # TYPE licet_bytes_in counter\n\
                           licet_bytes_in_total 5\n\
                           # HELP licet_refusals Refusals, by reason.\n\
                           # TYPE licet_refusals counter\n\
                           licet_refusals_total{reason=\"Expired\"} 0\n\
                           # HELP licet_peers_connected Connected peers.\n\
                           # TYPE licet_peers_connected gauge\n\
                           licet_peers_connected 2\n\
                           # HELP licet_lookup_seconds Time.\n\
                           # TYPE licet_lookup_seconds histogram\n\
                           # UNIT licet_lookup_seconds seconds\n\
                           licet_lookup_seconds_sum 0.5\n\
                           licet_lookup_seconds_count 1\n\
                           licet_lookup_seconds_bucket{le=\"+Inf\"} 1\n\
                           # TYPE licet_odd unknown\n\
                           licet_odd 1\n\
                           # EOF\n";
        assert_eq!(
            to_prometheus_text(openmetrics),
            "# HELP licet_bytes_in_total Chunk bytes received from peers.\n\
             # TYPE licet_bytes_in_total counter\n\
             licet_bytes_in_total 5\n\
             # HELP licet_refusals_total Refusals, by reason.\n\
             # TYPE licet_refusals_total counter\n\
             licet_refusals_total{reason=\"Expired\"} 0\n\
             # HELP licet_peers_connected Connected peers.\n\
             # TYPE licet_peers_connected gauge\n\
             licet_peers_connected 2\n\
             # HELP licet_lookup_seconds Time.\n\
             # TYPE licet_lookup_seconds histogram\n\
             licet_lookup_seconds_sum 0.5\n\
             licet_lookup_seconds_count 1\n\
             licet_lookup_seconds_bucket{le=\"+Inf\"} 1\n\
             # TYPE licet_odd untyped\n\
             licet_odd 1\n"
        );
    }

    #[test]
    fn the_nodes_own_metrics_convert_sample_for_sample() {
        let metrics = crate::metrics::Metrics::new();
        metrics.bytes_in.inc_by(3);
        let openmetrics = metrics.render();
        assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");
        let text = to_prometheus_text(&openmetrics);
        let samples = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.starts_with('#'))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(samples(&text), samples(&openmetrics));
        assert!(
            text.contains("# TYPE licet_bytes_in_total counter\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
        // Every sample of a counter belongs to a family of its own name.
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut words = line.split(' ').skip(2);
            let (name, kind) = (words.next().unwrap(), words.next().unwrap());
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{line}");
            }
        }
    }
}
