//! The network view's drawing: inline SVG made on the server, no script.
//! Alerts sit on rings by their distance from the one asked about (it is
//! the centre), evenly spaced; own alerts are filled, other agencies'
//! outlined, hubs are diamonds; confirmed and exact links are solid,
//! likely ones dashed; a chain asked for is drawn thick. Only ids,
//! agency ids, identifier types and this agency's own titles go in, all
//! escaped.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::chart::escape;
use crate::proto::v1::{AlertNetwork, MatchStrength};

const SIZE: f64 = 640.0;
const RING: f64 = 120.0;

/// A short name for an alert id: its agency and the uuid's last 6 digits.
pub fn short(id: &str) -> String {
    match id.split_once(':') {
        Some((agency, uuid)) => format!("{agency}…{}", &uuid[uuid.len().saturating_sub(6)..]),
        None => id.to_owned(),
    }
}

/// The positions of the nodes: the centre, then rings by depth.
fn layout(net: &AlertNetwork) -> BTreeMap<&str, (f64, f64)> {
    let mut rings: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for n in &net.nodes {
        rings.entry(n.depth).or_default().push(&n.id);
    }
    let c = SIZE / 2.0;
    let mut at = BTreeMap::new();
    for (depth, ids) in rings {
        let r = RING * f64::from(depth).min(2.4)
            + if depth > 2 {
                20.0 * f64::from(depth - 2)
            } else {
                0.0
            };
        for (i, id) in ids.iter().enumerate() {
            let angle =
                std::f64::consts::TAU * i as f64 / ids.len() as f64 + f64::from(depth) * 0.35;
            at.insert(*id, (c + r * angle.cos(), c + r * angle.sin()));
        }
    }
    at
}

/// The network as an SVG image with `summary` read by screen readers.
pub fn draw(net: &AlertNetwork, summary: &str) -> String {
    let at = layout(net);
    let on_path = |a: &str, b: &str| {
        net.path
            .windows(2)
            .any(|w| (w[0] == a && w[1] == b) || (w[0] == b && w[1] == a))
    };
    // Just the drawing's extent, with room for the labels.
    let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for (x, y) in at.values() {
        (x0, y0, x1, y1) = (x0.min(*x), y0.min(*y), x1.max(*x), y1.max(*y));
    }
    let (x0, y0) = (x0 - 70.0, y0 - 30.0);
    let (w, h) = (x1 + 70.0 - x0, y1 + 40.0 - y0);
    // Drawn at least this wide, so a small graph is not a thumbnail.
    let shown = w.max(480.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="network" viewBox="{x0:.0} {y0:.0} {w:.0} {h:.0}" width="{shown:.0}" role="img" aria-label="{l}" xmlns="http://www.w3.org/2000/svg"><title>{l}</title>"#,
        l = escape(summary)
    );
    for e in &net.edges {
        let (Some(a), Some(b)) = (at.get(e.from.as_str()), at.get(e.to.as_str())) else {
            continue;
        };
        let likely = e.strength == MatchStrength::Likely as i32 && !e.confirmed;
        let width = if on_path(&e.from, &e.to) { 4.0 } else { 1.5 };
        let _ = write!(
            svg,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#57606a" stroke-width="{width}"{}/>"##,
            a.0,
            a.1,
            b.0,
            b.1,
            if likely {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            }
        );
    }
    for n in &net.nodes {
        let Some((x, y)) = at.get(n.id.as_str()) else {
            continue;
        };
        let (shape, label) = if n.hub_links > 0 {
            (
                format!(
                    r##"<polygon points="{x:.1},{:.1} {:.1},{y:.1} {x:.1},{:.1} {:.1},{y:.1}" fill="#8a5300"/>"##,
                    y - 11.0,
                    x + 11.0,
                    y + 11.0,
                    x - 11.0
                ),
                format!("{} alerts", n.hub_links),
            )
        } else if n.own {
            (
                format!(r##"<circle cx="{x:.1}" cy="{y:.1}" r="9" fill="#0b5cad"/>"##),
                short(&n.id),
            )
        } else {
            (
                format!(
                    r##"<circle cx="{x:.1}" cy="{y:.1}" r="9" fill="#ffffff" stroke="#0b5cad" stroke-width="2"/>"##
                ),
                short(&n.id),
            )
        };
        let _ = write!(
            svg,
            r##"<g>{shape}<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#1b1f24">{}</text></g>"##,
            y + 22.0,
            escape(&label)
        );
    }
    svg.push_str("</svg>");
    svg
}
