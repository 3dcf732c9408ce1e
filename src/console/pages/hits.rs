//! Hits: the list, one hit with its evidence, the review, and the
//! disclosure request that follows a confirmed hit.

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::common::{held_here, log_after, strength};
use super::form::{Choice, FormState, choices};
use super::request_form::{self, RequestChoices};
use crate::console::Console;
use crate::console::guard::Posted;
use crate::console::rpc::{request, violations};
use crate::console::view::{Chrome, PageError, Viewer, label, page, when};
use crate::proto::v1::alert_service_server::AlertService;
use crate::proto::v1::send_disclosure_request::About;
use crate::proto::v1::{
    CountHitsRequest, GetHitRequest, Hit, HitChange, HitReview, HitVerdict, ReviewHitRequest,
};

/// Hits a list page shows.
const PAGE: u64 = 50;

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/hits", get(list))
        .route("/hits/{number}", get(detail))
        .route("/hits/{number}/review", post(review))
        .route("/hits/{number}/request", post(request_disclosure))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct HitFilters {
    /// "open": not reviewed here yet.
    show: String,
    /// Log positions at or below this one (older pages).
    before: u64,
}

pub struct HitRow {
    pub number: u64,
    pub kind: String,
    pub strength: String,
    pub strength_class: String,
    pub other_agency: String,
    pub local_alert: String,
    pub detected: String,
    pub review: String,
}

#[derive(Template)]
#[template(path = "console/hits.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<HitRow>,
    show: String,
    older: String,
}

async fn list(
    State(c): State<Console>,
    viewer: Viewer,
    Query(f): Query<HitFilters>,
) -> Result<Response, PageError> {
    let latest = c
        .alerts
        .count_hits(request(&viewer, CountHitsRequest { after_sequence: 0 }, ""))
        .await?
        .into_inner()
        .latest_sequence;
    let top = if f.before == 0 {
        latest
    } else {
        f.before.min(latest)
    };
    let from = top.saturating_sub(PAGE);
    // The page's window and every later entry: a review written after the
    // window still belongs to a hit in it.
    let log = log_after(&c, &viewer, from).await?;
    let mut reviews: BTreeMap<u64, HitReview> = BTreeMap::new();
    for h in &log {
        if let Some(r) = &h.our_review {
            reviews.insert(h.number, r.clone());
        }
    }
    let rows: Vec<HitRow> = log
        .iter()
        .filter(|h| h.sequence <= top && h.change() == HitChange::Found)
        .filter(|h| f.show != "open" || !reviews.contains_key(&h.number))
        .rev()
        .map(|h| row(h, reviews.get(&h.number)))
        .collect();
    page(ListPage {
        chrome: Chrome::new(&viewer, "hits"),
        rows,
        older: if from == 0 {
            String::new()
        } else {
            format!("/hits?before={from}&show={}", f.show)
        },
        show: f.show,
    })
}

pub fn row(h: &Hit, review: Option<&HitReview>) -> HitRow {
    let (strength, strength_class) = strength(h);
    HitRow {
        number: h.number,
        kind: label(h.r#type().as_str_name(), "IDENTIFIER_TYPE_"),
        strength,
        strength_class,
        other_agency: h.other_agency.clone(),
        local_alert: h.local_alert_id.clone(),
        detected: when(h.detected_at.as_ref()),
        review: review
            .map(|r| label(r.verdict().as_str_name(), "HIT_VERDICT_"))
            .unwrap_or_else(|| "not reviewed".into()),
    }
}

struct ReviewView {
    verdict: String,
    note: String,
    by: String,
    at: String,
}

fn review_view(r: &Option<HitReview>) -> Option<ReviewView> {
    r.as_ref().map(|r| ReviewView {
        verdict: label(r.verdict().as_str_name(), "HIT_VERDICT_"),
        note: r.note.clone(),
        by: format!("{} ({})", r.reviewer, r.agency),
        at: when(r.reviewed_at.as_ref()),
    })
}

#[derive(Template)]
#[template(path = "console/hit.html")]
struct DetailPage {
    chrome: Chrome,
    hit: Hit,
    kind: String,
    strength: String,
    strength_class: String,
    score: String,
    evidence: Vec<(String, String)>,
    detected: String,
    ours: Option<ReviewView>,
    theirs: Option<ReviewView>,
    confirmed: bool,
    /// The other agency's alert was shared with this node: link to it.
    their_alert_here: bool,
    verdicts: Vec<Choice>,
    choices: RequestChoices,
    form: FormState,
}

async fn detail(
    State(c): State<Console>,
    viewer: Viewer,
    Path(number): Path<u64>,
) -> Result<Response, PageError> {
    let hit = get_hit(&c, &viewer, number).await?;
    let held = held_here(&c, &viewer, &hit.other_alert_id).await;
    page(detail_page(held, &viewer, hit, FormState::default()))
}

async fn get_hit(c: &Console, viewer: &Viewer, number: u64) -> Result<Hit, PageError> {
    Ok(c.alerts
        .get_hit(request(viewer, GetHitRequest { number }, ""))
        .await?
        .into_inner())
}

fn detail_page(
    their_alert_here: bool,
    viewer: &Viewer,
    hit: Hit,
    mut form: FormState,
) -> DetailPage {
    let (strength, strength_class) = strength(&hit);
    let evidence = hit
        .evidence
        .as_ref()
        .map(|e| {
            let rank = match (e.rank, e.candidates) {
                (_, 0 | 1) => "the only candidate".to_string(),
                (1, n) => format!("best of {n} candidates"),
                (r, n) => format!("candidate {r} of {n}"),
            };
            vec![
                (
                    "Names".into(),
                    format!(
                        "{:.0}% alike (after folding transliterations)",
                        e.name_similarity * 100.0
                    ),
                ),
                (
                    "Date of birth".into(),
                    label(e.date().as_str_name(), "DATE_AGREEMENT_"),
                ),
                (
                    "Compared within".into(),
                    label(e.block().as_str_name(), "BLOCK_KIND_").to_lowercase() + " block",
                ),
                ("Among candidates".into(), rank),
            ]
        })
        .unwrap_or_default();
    request_form::prefill(&mut form);
    let confirmed = hit
        .our_review
        .as_ref()
        .is_some_and(|r| r.verdict() == HitVerdict::Confirmed);
    DetailPage {
        chrome: Chrome::new(viewer, "hits"),
        kind: label(hit.r#type().as_str_name(), "IDENTIFIER_TYPE_"),
        strength,
        strength_class,
        score: if hit.fuzzy {
            format!("{:.2}", hit.similarity)
        } else {
            "equal tokens".into()
        },
        evidence,
        detected: when(hit.detected_at.as_ref()),
        ours: review_view(&hit.our_review),
        theirs: review_view(&hit.their_review),
        confirmed,
        their_alert_here,
        verdicts: choices!(HitVerdict, "HIT_VERDICT_"),
        choices: RequestChoices::default(),
        form,
        hit,
    }
}

fn back_to(number: u64) -> Response {
    Redirect::to(&format!("/hits/{number}")).into_response()
}

async fn review(
    State(c): State<Console>,
    Path(number): Path<u64>,
    posted: Posted,
) -> Result<Response, PageError> {
    let verdict = HitVerdict::from_str_name(posted.get("verdict")).unwrap_or_default();
    let req = ReviewHitRequest {
        number,
        verdict: verdict as i32,
        note: posted.get("note").to_owned(),
    };
    match c
        .alerts
        .review_hit(request(&posted.viewer, req, posted.get("purpose")))
        .await
    {
        Ok(_) => Ok(back_to(number)),
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            let mut form = FormState::from_fields(&posted.fields);
            form.map_path("verdict", "verdict");
            form.map_path("note", "note");
            form.add_violations(&violations(&s));
            let hit = get_hit(&c, &posted.viewer, number).await?;
            let held = held_here(&c, &posted.viewer, &hit.other_alert_id).await;
            let html = page(detail_page(held, &posted.viewer, hit, form))?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
        }
        Err(s) => Err(s.into()),
    }
}

async fn request_disclosure(
    State(c): State<Console>,
    Path(number): Path<u64>,
    posted: Posted,
) -> Result<Response, PageError> {
    let form = FormState::from_fields(&posted.fields);
    match request_form::send(&c, &posted.viewer, About::HitNumber(number), form).await? {
        Ok(id) => Ok(request_form::see_request(&id)),
        Err(form) => {
            let hit = get_hit(&c, &posted.viewer, number).await?;
            let held = held_here(&c, &posted.viewer, &hit.other_alert_id).await;
            let html = page(detail_page(held, &posted.viewer, hit, form))?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
        }
    }
}
