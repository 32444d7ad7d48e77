//! The latency chart: every scenario's latency distributions drawn as one self-contained SVG,
//! a small percentile plot per scenario in the HdrHistogram style, Township beside its references.

use std::fmt::Write;

use crate::row::Row;

const COLUMNS: usize = 3;
const PANEL_W: f64 = 420.0;
const PLOT_H: f64 = 190.0;
const MARGIN: f64 = 16.0;
const LINE_H: f64 = 15.0;
const BOLD: &str = r#"font-weight="bold""#;
const TITLE: &str = r#"font-size="17" font-weight="bold""#;
const HEAD: &str = r#"font-size="12.5" font-weight="bold""#;
const END: &str = r#"text-anchor="end""#;
const TITLE_MAX_LINES: usize = 3;
const TITLE_WRAP: usize = 50;
/// The percentile the maximum (q = 1.0) is drawn at: 99.999%, five nines, labelled "max".
const MAX_NINES: f64 = 5.0;
/// Township's colour first, then the references' in turn.
const COLOURS: [&str; 7] = [
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f",
];

/// Renders `rows` as a standalone SVG: one panel per scenario, in order of first appearance, in a
/// grid of up to three columns, under `title`.
///
/// Each panel plots latency against percentile. The x axis is the "nines" scale of HdrHistogram
/// plots, x = log10(1 / (1 − q)), ticked at 0%, 90%, 99%, 99.9%, 99.99%; the maximum (q = 1.0) is
/// drawn at 99.999% and ticked "max". The y axis is linear, in milliseconds, from 0 to a rounded-up
/// maximum of the panel's own figures, so each panel has its own scale. Each system is a polyline,
/// Township's (the scenario's first row) bold in red; the legend names every system, and a system
/// that could not be measured shows there as "<system>: missing" with no line. Long scenario names
/// wrap onto up to three lines.
pub fn latency_svg(title: &str, rows: &[Row]) -> String {
    let mut scenarios: Vec<Vec<&Row>> = Vec::new();
    for row in rows {
        match scenarios.iter_mut().find(|g| g[0].scenario == row.scenario) {
            Some(group) => group.push(row),
            None => scenarios.push(vec![row]),
        }
    }
    let title_lines = scenarios.iter().map(|g| wrap(&g[0].scenario).len()).max();
    let legend_lines = scenarios.iter().map(Vec::len).max().unwrap_or(0) as f64;
    let title_h = title_lines.unwrap_or(1) as f64 * 16.0 + 24.0;
    let panel_h = title_h + PLOT_H + 38.0 + legend_lines * LINE_H;
    let width = MARGIN + scenarios.len().clamp(1, COLUMNS) as f64 * (PANEL_W + MARGIN);
    let height = 40.0 + scenarios.len().div_ceil(COLUMNS) as f64 * (panel_h + MARGIN);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    text(&mut svg, MARGIN, 26.0, TITLE, title);
    for (i, group) in scenarios.iter().enumerate() {
        let px = MARGIN + (i % COLUMNS) as f64 * (PANEL_W + MARGIN);
        let py = 40.0 + (i / COLUMNS) as f64 * (panel_h + MARGIN);
        panel(&mut svg, (px, py), (panel_h, title_h), group);
    }
    svg.push_str("</svg>\n");
    svg
}

/// Draws one scenario's panel, `h` high, with its top-left corner at (`px`, `py`).
fn panel(svg: &mut String, (px, py): (f64, f64), (h, title_h): (f64, f64), rows: &[&Row]) {
    let _ = write!(
        svg,
        r##"<rect x="{px}" y="{py}" width="{PANEL_W}" height="{h}" fill="none" stroke="#cccccc"/>"##
    );
    for (n, line) in wrap(&rows[0].scenario).iter().enumerate() {
        let y = py + 16.0 + n as f64 * 16.0;
        text(svg, px + 8.0, y, HEAD, line);
    }
    let (x0, x1) = (px + 52.0, px + PANEL_W - 18.0);
    let (y0, y1) = (py + title_h + PLOT_H, py + title_h);
    let quantiles = rows.iter().flat_map(|r| &r.quantiles);
    let (step, top) = nice_scale(quantiles.fold(0.0, |m, &(_, us)| f64::max(m, us as f64 / 1e3)));
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    let sx = |nines: f64| x0 + (x1 - x0) * nines / MAX_NINES;
    let sy = |ms: f64| y0 - (y0 - y1) * ms / top;
    let mut tick = 0.0;
    while tick <= top + step / 2.0 {
        line(svg, (x0, sy(tick)), (x1, sy(tick)), "#e5e5e5", 1.0);
        let label = format!("{tick:.decimals$}");
        text(svg, x0 - 5.0, sy(tick) + 4.0, END, &label);
        tick += step;
    }
    text(svg, x0 - 5.0, y1 - 6.0, END, "ms");
    let x_ticks = ["0%", "90%", "99%", "99.9%", "99.99%", "max"];
    for (n, label) in x_ticks.iter().enumerate() {
        let x = sx(n as f64);
        line(svg, (x, y1), (x, y0), "#e5e5e5", 1.0);
        text(svg, x, y0 + 15.0, r#"text-anchor="middle""#, label);
    }
    let axes = format!(r##"<path d="M{x0} {y1}V{y0}H{x1}" fill="none" stroke="#555555"/>"##);
    svg.push_str(&axes);
    let middle = r##"text-anchor="middle" fill="#555555""##;
    text(svg, (x0 + x1) / 2.0, y0 + 28.0, middle, "percentile");
    for (n, row) in rows.iter().enumerate() {
        let (colour, width) = (COLOURS[n % COLOURS.len()], if n == 0 { 2.8 } else { 1.5 });
        let ly = y0 + 30.0 + (n + 1) as f64 * LINE_H;
        let bold = if n == 0 { BOLD } else { "" };
        let missing = if row.missing.is_some() {
            ": missing"
        } else {
            ""
        };
        text(svg, x0 + 26.0, ly, bold, &(row.system.clone() + missing));
        if row.missing.is_some() {
            continue;
        }
        line(svg, (x0, ly - 4.0), (x0 + 20.0, ly - 4.0), colour, width);
        let points: Vec<String> = (row.quantiles.iter())
            .map(|&(q, us)| format!("{:.1},{:.1}", sx(nines(q)), sy(us as f64 / 1e3)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="{width}" stroke-linejoin="round"/>"#,
            points.join(" ")
        );
    }
}

/// Writes a `<text>` element at (`x`, `y`) with extra `attributes`, its content escaped.
fn text(svg: &mut String, x: f64, y: f64, attributes: &str, content: &str) {
    let content = escape(content);
    let _ = write!(
        svg,
        r#"<text x="{x:.1}" y="{y:.1}" {attributes}>{content}</text>"#
    );
}

/// Writes a straight `<line>` from `a` to `b`.
fn line(svg: &mut String, a: (f64, f64), b: (f64, f64), colour: &str, width: f64) {
    let _ = write!(
        svg,
        r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{colour}" stroke-width="{width}"/>"#,
        a.0, a.1, b.0, b.1
    );
}

/// The x position of quantile `q` in nines, the maximum clamped to [`MAX_NINES`].
fn nines(q: f64) -> f64 {
    (1.0 / (1.0 - q.clamp(0.0, 1.0))).log10().min(MAX_NINES)
}

/// A tick step of 1, 2 or 5 × 10ⁿ giving about four ticks, and the axis top: `max_ms` rounded up
/// to a whole step (1 ms when there is nothing to draw).
fn nice_scale(max_ms: f64) -> (f64, f64) {
    let max_ms = if max_ms > 0.0 { max_ms } else { 1.0 };
    let magnitude = 10f64.powf((max_ms / 4.0).log10().floor());
    let step = match max_ms / 4.0 / magnitude {
        f if f <= 1.0 => 1.0,
        f if f <= 2.0 => 2.0,
        f if f <= 5.0 => 5.0,
        _ => 10.0,
    } * magnitude;
    (step, (max_ms / step - 1e-9).ceil().max(1.0) * step)
}

/// Breaks a panel title into lines of at most [`TITLE_WRAP`] characters at spaces (cutting longer
/// words), ending with "…" past [`TITLE_MAX_LINES`] lines.
fn wrap(text: &str) -> Vec<String> {
    let chars: Vec<Vec<char>> = text
        .split_whitespace()
        .map(|w| w.chars().collect())
        .collect();
    let (mut lines, mut line) = (Vec::new(), String::new());
    for word in chars.iter().flat_map(|w| w.chunks(TITLE_WRAP)) {
        let used = line.chars().count();
        if used > 0 && used + 1 + word.len() > TITLE_WRAP {
            lines.push(std::mem::take(&mut line));
        } else if used > 0 {
            line.push(' ');
        }
        line.extend(word);
    }
    lines.push(line);
    if lines.len() > TITLE_MAX_LINES {
        lines.truncate(TITLE_MAX_LINES);
        lines[TITLE_MAX_LINES - 1].push('…');
    }
    lines
}

/// `text` with XML's special characters escaped, for element content and attribute values.
fn escape(text: &str) -> String {
    let text = text.replace('&', "&amp;").replace('<', "&lt;");
    let text = text.replace('>', "&gt;").replace('"', "&quot;");
    text.replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hdrhistogram::Histogram;

    use super::*;
    use crate::row::{Durable, Rounds};

    fn row(scenario: &str, system: &str, scale: u64) -> Row {
        let mut hist = Histogram::<u64>::new(3).unwrap();
        for i in 1..=1000 {
            hist.record(i * scale).unwrap();
        }
        let mut rounds = Rounds::default();
        rounds.add(hist, Duration::from_secs(1)).unwrap();
        rounds
            .row(scenario, system, Durable::NotApplicable)
            .unwrap()
    }

    const CHAT: &str = "chat: fan-out to 1000 members, 10 messages/s (deliveries/s) × 2";

    #[test]
    fn draws_a_line_per_measured_row_and_escapes_text() {
        let rows = [
            row("lock: 1 client", "lock-server", 1),
            row("lock: 1 client", "etcd <&> 3.4", 3),
            Row::missing(
                "lock: 1 client",
                "Redis",
                Durable::NotApplicable,
                "not installed",
            ),
            row(CHAT, "chat-server", 50),
        ];
        let svg = latency_svg("Township & friends", &rows);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains("etcd &lt;&amp;&gt; 3.4") && !svg.contains("<&>"));
        assert!(svg.contains("Township &amp; friends"));
        assert!(svg.contains("Redis: missing"));
        assert!(svg.contains("(deliveries/s) × 2"));
    }

    #[test]
    fn a_scenario_with_only_a_missing_row_still_gets_a_panel() {
        let rows = [Row::missing(
            "kv: 1 client",
            "etcd",
            Durable::NotApplicable,
            "not installed",
        )];
        let svg = latency_svg("t", &rows);
        assert_eq!(svg.matches("<polyline").count(), 0);
        assert!(svg.contains("kv: 1 client"));
        assert!(svg.contains("etcd: missing"));
        assert!(svg.contains(">0.0<") && svg.contains(">1.0<"));
    }

    #[test]
    fn long_titles_wrap_and_scales_round_up() {
        let lines = wrap(CHAT);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.chars().count() <= TITLE_WRAP));
        assert_eq!(wrap(&"x".repeat(500)).len(), TITLE_MAX_LINES);
        assert_eq!(nice_scale(3.7), (1.0, 4.0));
        assert_eq!(nice_scale(0.0), (0.5, 1.0));
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert_eq!(nines(1.0), MAX_NINES);
    }
}
