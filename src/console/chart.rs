//! Small bar charts as inline SVG, drawn on the server: no script, no
//! external asset, readable at any zoom. Only numbers and fixed words go
//! into them (escaped anyway), never case data.

use std::fmt::Write;

/// One series of a chart: a value per day.
pub struct Series {
    pub name: &'static str,
    pub values: Vec<f64>,
    /// A fill colour from the console's palette.
    pub color: &'static str,
}

const WIDTH: f64 = 420.0;
const HEIGHT: f64 = 170.0;
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 10.0;

/// Text made safe inside SVG markup.
pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An axis value as people write it: `5`, `0.5`, `0.025`.
fn number(v: f64) -> String {
    if v.fract() == 0.0 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A round upper bound for the axis: 1, 2, 5 × 10ⁿ.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if max <= step * magnitude {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

/// A label as the axis shows it: a day (`YYYY-MM-DD`) without its year,
/// anything else (a country, a quarter) whole.
fn short(label: &str) -> &str {
    match label.as_bytes() {
        [_, _, _, _, b'-', _, _, b'-', _, _] => &label[5..],
        _ => label,
    }
}

/// Grouped bars, one group per label (days as `YYYY-MM-DD`, or rows of a
/// statistics table), with a legend and an accessible summary (`summary`
/// is read by screen readers).
pub fn bars(title: &str, summary: &str, days: &[String], series: &[Series], unit: &str) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0, f64::max);
    let top = nice_max(max);
    let plot_w = WIDTH - LEFT - 8.0;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let group = plot_w / days.len().max(1) as f64;
    let bar = (group * 0.8) / series.len().max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {h}" role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg"><title>{label}</title>"#,
        h = HEIGHT + 18.0,
        label = escape(&format!("{title}: {summary}"))
    );
    // Axis and grid: 0, half, top.
    for (i, frac) in [0.0, 0.5, 1.0].iter().enumerate() {
        let y = TOP + plot_h * (1.0 - frac);
        let value = top * frac;
        let text = number(value);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}" stroke="{stroke}" stroke-width="1"/><text x="{tx:.1}" y="{ty:.1}" font-size="11" text-anchor="end" fill="#57606a">{text}</text>"##,
            x2 = LEFT + plot_w,
            stroke = if i == 0 { "#57606a" } else { "#d0d7de" },
            tx = LEFT - 4.0,
            ty = y + 3.5,
        );
    }
    for (d, day) in days.iter().enumerate() {
        let x0 = LEFT + group * d as f64 + group * 0.1;
        for (k, s) in series.iter().enumerate() {
            let v = s.values.get(d).copied().unwrap_or(0.0);
            let h = if top > 0.0 { plot_h * v / top } else { 0.0 };
            let _ = write!(
                svg,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="{c}"><title>{t}</title></rect>"#,
                x = x0 + bar * k as f64,
                y = TOP + plot_h - h,
                w = (bar - 1.0).max(1.0),
                c = s.color,
                t = escape(&format!("{day}: {} {v:.0}{unit}", s.name)),
            );
        }
        // Every other label (a day as month-day), so they do not collide.
        if d % 2 == (days.len() + 1) % 2 || days.len() <= 7 {
            let _ = write!(
                svg,
                r##"<text x="{x:.1}" y="{y:.1}" font-size="11" text-anchor="middle" fill="#57606a">{t}</text>"##,
                x = LEFT + group * d as f64 + group / 2.0,
                y = HEIGHT - BOTTOM + 14.0,
                t = escape(short(day)),
            );
        }
    }
    // Legend.
    let mut x = LEFT;
    for s in series {
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{y:.1}" width="10" height="10" fill="{c}"/><text x="{tx:.1}" y="{ty:.1}" font-size="11" fill="#1b1f24">{n}</text>"##,
            y = HEIGHT + 4.0,
            c = s.color,
            tx = x + 14.0,
            ty = HEIGHT + 13.0,
            n = escape(s.name),
        );
        x += 24.0 + 7.0 * s.name.len() as f64;
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_numbers_read_plainly() {
        assert_eq!(number(5.0), "5");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(0.025), "0.025");
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(12.0), 20.0);
        assert_eq!(nice_max(420.0), 500.0);
    }

    #[test]
    fn a_chart_has_one_bar_per_day_and_series_and_says_what_it_shows() {
        let days: Vec<String> = (1..=3).map(|d| format!("2026-12-0{d}")).collect();
        let svg = bars(
            "Alerts per day",
            "5 submitted <b>",
            &days,
            &[
                Series {
                    name: "submitted",
                    values: vec![1.0, 0.0, 4.0],
                    color: "#0b5cad",
                },
                Series {
                    name: "received",
                    values: vec![2.0, 2.0, 2.0],
                    color: "#1a7f37",
                },
            ],
            "",
        );
        assert_eq!(
            svg.matches("<rect x=").count(),
            6 + 2,
            "bars and legend swatches"
        );
        assert!(svg.contains("aria-label=\"Alerts per day: 5 submitted &lt;b&gt;\""));
        assert!(svg.contains("2026-12-03: submitted 4"));
        assert!(!svg.contains("<script"));
    }
}
