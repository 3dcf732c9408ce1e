//! The sharing policy: the version in force and its history, an editor that
//! checks a draft and shows every problem at its line and column, what the
//! draft would change for each peer over the stored alerts, its test cases,
//! explain for one alert, and installing it (role `admin`).

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::form::FormState;
use crate::console::Console;
use crate::console::guard::Posted;
use crate::console::rpc::{request, violations};
use crate::console::view::{Chrome, PageError, Viewer, page, when};
use crate::proto::v1::admin_service_server::AdminService;
use crate::proto::v1::{
    DiffPolicyRequest, DiffPolicyResponse, ExplainPolicyRequest, GetDirectoryRequest,
    GetPolicyRequest, ListPolicyVersionsRequest, PolicyVersion, SetPolicyRequest,
    TestPolicyRequest, TestPolicyResponse,
};

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/policy", get(show))
        .route("/policy/check", post(check))
        .route("/policy/install", post(install))
        .route("/policy/versions/{version}", get(version))
        .route("/policy/explain", get(explain))
}

/// One problem of a draft, where it is.
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
    /// The draft's text of that line, to show under the message.
    pub excerpt: String,
}

/// Reads `line:column: message` (the shape policy problems take); the
/// whole description at line 0 otherwise.
pub fn problem(description: &str, text: &str) -> Problem {
    let mut parts = description.splitn(3, ':');
    let parsed = match (parts.next(), parts.next(), parts.next()) {
        (Some(l), Some(c), Some(m)) => match (l.trim().parse(), c.trim().parse()) {
            (Ok(line), Ok(column)) => Some((line, column, m.trim().to_owned())),
            _ => None,
        },
        _ => None,
    };
    let (line, column, message) = parsed.unwrap_or((0, 0, description.to_owned()));
    let excerpt = if line > 0 {
        text.lines().nth(line - 1).unwrap_or("").to_owned()
    } else {
        String::new()
    };
    Problem {
        line,
        column,
        message,
        excerpt,
    }
}

pub struct VersionRow {
    pub version: u64,
    pub set_by: String,
    pub set_at: String,
    pub source: String,
    pub comment: String,
    pub sha: String,
    pub in_force: bool,
}

fn version_row(v: &PolicyVersion, in_force: u64) -> VersionRow {
    VersionRow {
        version: v.version,
        set_by: v.set_by.clone(),
        set_at: when(v.set_at.as_ref()),
        source: v.source.clone(),
        comment: v.comment.clone(),
        sha: v.sha256.chars().take(12).collect(),
        in_force: v.version == in_force,
    }
}

pub struct PeerChange {
    pub peer: String,
    pub newly: u64,
    pub no_longer: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub examples: Vec<(String, String)>,
}

pub struct CaseRow {
    pub name: String,
    pub passed: bool,
    pub expected: String,
    pub got: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "console/policy.html")]
struct PolicyPage {
    chrome: Chrome,
    current: PolicyVersion,
    current_set_at: String,
    history: Vec<VersionRow>,
    draft: String,
    comment: String,
    expected_version: u64,
    problems: Vec<Problem>,
    general: Vec<String>,
    checked: bool,
    alerts_compared: u64,
    changes: Vec<PeerChange>,
    tests_configured: bool,
    cases: Vec<CaseRow>,
    cases_failed: usize,
    installed: u64,
    /// `group:NAME` → the members it reaches now (empty without a directory).
    groups: Vec<(String, String)>,
}

/// The policy in force, its history, and what each directory group means.
struct Standing {
    current: PolicyVersion,
    history: Vec<VersionRow>,
    groups: Vec<(String, String)>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Shown {
    /// The version just installed (after a redirect).
    installed: u64,
}

async fn standing(c: &Console, viewer: &Viewer) -> Result<Standing, PageError> {
    let current = c
        .admin
        .get_policy(request(viewer, GetPolicyRequest {}, ""))
        .await?
        .into_inner();
    let versions = c
        .admin
        .list_policy_versions(request(viewer, ListPolicyVersionsRequest {}, ""))
        .await?
        .into_inner()
        .versions;
    let history = versions
        .iter()
        .map(|v| version_row(v, current.version))
        .collect();
    let directory = c
        .admin
        .get_directory(request(viewer, GetDirectoryRequest {}, ""))
        .await?
        .into_inner();
    let groups = directory
        .current
        .and_then(|d| crate::directory::Signed::open(d).ok())
        .map(|d| group_rows(d.directory(), &viewer.client.agency.to_string()))
        .unwrap_or_default();
    Ok(Standing {
        current,
        history,
        groups,
    })
}

/// Each group of `d` and the members other than `own` it reaches (what a
/// rule naming `group:NAME` means on this node now).
fn group_rows(d: &crate::proto::v1::Directory, own: &str) -> Vec<(String, String)> {
    let mut groups: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for m in &d.members {
        for g in &m.groups {
            let members = groups.entry(g).or_default();
            if m.agency_id != own {
                members.push(&m.agency_id);
            }
        }
    }
    groups
        .into_iter()
        .map(|(g, members)| {
            let reached = if members.is_empty() {
                "no other member".to_owned()
            } else {
                members.join(", ")
            };
            (format!("group:{g}"), reached)
        })
        .collect()
}

fn policy_page(viewer: &Viewer, standing: Standing, draft: String, comment: String) -> PolicyPage {
    let Standing {
        current,
        history,
        groups,
    } = standing;
    PolicyPage {
        chrome: Chrome::new(viewer, "policy"),
        current_set_at: when(current.set_at.as_ref()),
        expected_version: current.version,
        current,
        history,
        draft,
        comment,
        problems: Vec::new(),
        general: Vec::new(),
        checked: false,
        alerts_compared: 0,
        changes: Vec::new(),
        tests_configured: false,
        cases: Vec::new(),
        cases_failed: 0,
        installed: 0,
        groups,
    }
}

async fn show(
    State(c): State<Console>,
    viewer: Viewer,
    Query(shown): Query<Shown>,
) -> Result<Response, PageError> {
    let standing = standing(&c, &viewer).await?;
    let draft = standing.current.text.clone();
    let mut p = policy_page(&viewer, standing, draft, String::new());
    p.installed = shown.installed;
    page(p)
}

/// Puts a refused draft's problems on the page (each at its line and
/// column), or the refusal itself.
fn refused(p: &mut PolicyPage, status: &tonic::Status) {
    let found = violations(status);
    if found.is_empty() {
        p.general.push(status.message().to_owned());
    }
    for v in found {
        p.problems.push(problem(&v.description, &p.draft));
    }
}

fn diff_rows(diff: &DiffPolicyResponse) -> Vec<PeerChange> {
    diff.peers
        .iter()
        .map(|d| PeerChange {
            peer: d.peer.clone(),
            newly: d.newly_shared,
            no_longer: d.no_longer_shared,
            changed: d.changed_fields,
            unchanged: d.unchanged,
            examples: d
                .examples_newly_shared
                .iter()
                .map(|a| (a.clone(), "newly shared".to_string()))
                .chain(
                    d.examples_no_longer_shared
                        .iter()
                        .map(|a| (a.clone(), "no longer shared".to_string())),
                )
                .chain(
                    d.examples_changed_fields
                        .iter()
                        .map(|a| (a.clone(), "shared differently".to_string())),
                )
                .collect(),
        })
        .collect()
}

fn case_rows(t: &TestPolicyResponse) -> Vec<CaseRow> {
    t.results
        .iter()
        .map(|r| CaseRow {
            name: r.name.clone(),
            passed: r.passed,
            expected: r.expected.clone(),
            got: r.got.clone(),
            reason: r.reason.clone(),
        })
        .collect()
}

/// "Check": validates the draft, and when it is valid shows what it would
/// change for each peer and how its test cases fare. Nothing is installed.
async fn check(State(c): State<Console>, posted: Posted) -> Result<Response, PageError> {
    let viewer = posted.viewer.clone();
    let form = FormState::from_fields(&posted.fields);
    let draft = form.value_raw("policy_text").to_owned();
    let standing = standing(&c, &viewer).await?;
    let mut p = policy_page(
        &viewer,
        standing,
        draft.clone(),
        form.value("comment").to_owned(),
    );
    p.checked = true;
    let diff = DiffPolicyRequest {
        old_policy_text: String::new(),
        new_policy_text: draft.clone(),
    };
    match c.admin.diff_policy(request(&viewer, diff, "")).await {
        Ok(d) => {
            let d = d.into_inner();
            p.alerts_compared = d.alerts;
            p.changes = diff_rows(&d);
        }
        Err(s) if s.code() == tonic::Code::InvalidArgument => {
            refused(&mut p, &s);
            let html = page(p)?;
            return Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html).into_response());
        }
        Err(s) => return Err(s.into()),
    }
    match c
        .admin
        .test_policy(request(
            &viewer,
            TestPolicyRequest { policy_text: draft },
            "",
        ))
        .await
    {
        Ok(t) => {
            let t = t.into_inner();
            p.tests_configured = t.configured;
            p.cases = case_rows(&t);
            p.cases_failed = p.cases.iter().filter(|c| !c.passed).count();
        }
        Err(s) if s.code() == tonic::Code::InvalidArgument => refused(&mut p, &s),
        Err(s) => return Err(s.into()),
    }
    page(p)
}

async fn install(State(c): State<Console>, posted: Posted) -> Result<Response, PageError> {
    let viewer = posted.viewer.clone();
    let form = FormState::from_fields(&posted.fields);
    let draft = form.value_raw("policy_text").to_owned();
    let req = SetPolicyRequest {
        policy_text: draft.clone(),
        expected_version: form.value("expected_version").parse().unwrap_or(0),
        comment: form.value("comment").to_owned(),
    };
    // The comment is kept with the version; it is also the call's purpose
    // when it fits one (a purpose is short, one line).
    let purpose = crate::audit::check_purpose(form.value("comment")).unwrap_or("");
    match c.admin.set_policy(request(&viewer, req, purpose)).await {
        Ok(v) => Ok(
            Redirect::to(&format!("/policy?installed={}", v.into_inner().version)).into_response(),
        ),
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::InvalidArgument | tonic::Code::Aborted
            ) =>
        {
            let standing = standing(&c, &viewer).await?;
            let mut p = policy_page(&viewer, standing, draft, form.value("comment").to_owned());
            if s.code() == tonic::Code::Aborted {
                p.general.push(
                    "another administrator installed a new version since you opened this page: \
                     check your draft against it, then install"
                        .into(),
                );
            } else {
                refused(&mut p, &s);
            }
            let html = page(p)?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html).into_response())
        }
        Err(s) => Err(s.into()),
    }
}

#[derive(Template)]
#[template(path = "console/policy_version.html")]
struct VersionPage {
    chrome: Chrome,
    v: PolicyVersion,
    set_at: String,
}

async fn version(
    State(c): State<Console>,
    viewer: Viewer,
    Path(number): Path<u64>,
) -> Result<Response, PageError> {
    let versions = c
        .admin
        .list_policy_versions(request(&viewer, ListPolicyVersionsRequest {}, ""))
        .await?
        .into_inner()
        .versions;
    let v = versions
        .into_iter()
        .find(|v| v.version == number)
        .ok_or_else(|| PageError::NotFound(format!("there is no policy version {number}")))?;
    page(VersionPage {
        chrome: Chrome::new(&viewer, "policy"),
        set_at: when(v.set_at.as_ref()),
        v,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ExplainQuery {
    alert: String,
}

pub struct DecisionRow {
    pub peer: String,
    pub shared: bool,
    pub rule: String,
    pub reason: String,
    pub disclosure: String,
}

#[derive(Template)]
#[template(path = "console/policy_explain.html")]
struct ExplainPage {
    chrome: Chrome,
    alert: String,
    version: u64,
    rows: Vec<DecisionRow>,
    problem: String,
}

/// What the policy in force does with one stored alert, peer by peer.
async fn explain(
    State(c): State<Console>,
    viewer: Viewer,
    Query(q): Query<ExplainQuery>,
) -> Result<Response, PageError> {
    let mut p = ExplainPage {
        chrome: Chrome::new(&viewer, "policy"),
        alert: q.alert.trim().to_owned(),
        version: 0,
        rows: Vec::new(),
        problem: String::new(),
    };
    if !p.alert.is_empty() {
        let req = ExplainPolicyRequest {
            alert_id: p.alert.clone(),
            peers: Vec::new(),
            policy_text: String::new(),
        };
        match c.admin.explain_policy(request(&viewer, req, "")).await {
            Ok(r) => {
                let r = r.into_inner();
                p.version = r.policy_version;
                p.rows = r
                    .decisions
                    .iter()
                    .map(|d| DecisionRow {
                        peer: d.peer.clone(),
                        shared: d.shared,
                        rule: if d.rule.is_empty() {
                            "built-in".into()
                        } else {
                            d.rule.clone()
                        },
                        reason: d.reason.clone(),
                        disclosure: if !d.disclosure_refusal.is_empty() {
                            format!("refused: {}", d.disclosure_refusal)
                        } else if !d.disclosure_rule.is_empty() {
                            format!(
                                "rule `{}` ({}), at most {}",
                                d.disclosure_rule,
                                d.disclosure_legal_bases.join(", "),
                                d.disclosure_maximum
                            )
                        } else {
                            "—".into()
                        },
                    })
                    .collect();
            }
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::InvalidArgument | tonic::Code::NotFound
                ) =>
            {
                p.problem = violations(&s)
                    .first()
                    .map(|v| v.description.clone())
                    .unwrap_or_else(|| s.message().to_owned());
            }
            Err(s) => return Err(s.into()),
        }
    }
    page(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_are_read_at_their_line_and_column() {
        let text = "[[rules]]\nnme = \"x\"\n";
        let p = problem(
            "2:1: unknown field `nme` (hint: did you mean `name`?)",
            text,
        );
        assert_eq!((p.line, p.column), (2, 1));
        assert_eq!(
            p.message,
            "unknown field `nme` (hint: did you mean `name`?)"
        );
        assert_eq!(p.excerpt, "nme = \"x\"");
        let p = problem("the policy is too large", text);
        assert_eq!((p.line, p.column), (0, 0));
        assert_eq!(p.message, "the policy is too large");
    }
}
