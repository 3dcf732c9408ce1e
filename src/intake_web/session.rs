//! The one cookie of the intake: after a receipt opened a report, a random
//! token for a quarter of an hour, so the reporter can read and answer
//! without typing the receipt again. Kept in memory only (a restart ends
//! every session), bounded in number; the token says nothing of the
//! report or the person.

use std::collections::HashMap;
use std::sync::Mutex;

/// The cookie's name.
pub const COOKIE: &str = "cbr";
/// Seconds a session lasts.
pub const LIFETIME_SECS: i64 = 900;
/// Sessions held at most: a flood of logins cannot grow memory past this.
const MAX_SESSIONS: usize = 10_000;

/// Live sessions: token → (report id, when it ends).
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, (String, i64)>>,
}

impl Sessions {
    /// A new session on report `id` from `now` (Unix seconds): its token,
    /// or `None` when the sessions are full even after the ended ones go.
    pub fn open(&self, id: &str, now: i64) -> Option<String> {
        let mut live = self.live.lock().expect("never poisoned: no panics inside");
        if live.len() >= MAX_SESSIONS {
            live.retain(|_, (_, ends)| *ends > now);
            if live.len() >= MAX_SESSIONS {
                return None;
            }
        }
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG is available");
        let token = crate::text::hex(&bytes);
        live.insert(token.clone(), (id.to_owned(), now + LIFETIME_SECS));
        Some(token)
    }

    /// The report of the session `token` names, while it lasts.
    pub fn report(&self, token: &str, now: i64) -> Option<String> {
        let live = self.live.lock().expect("never poisoned: no panics inside");
        live.get(token)
            .filter(|(_, ends)| *ends > now)
            .map(|(id, _)| id.clone())
    }

    /// The `Set-Cookie` value of `token`: HTTPS only, not for scripts (there
    /// are none), never sent from another site.
    pub fn cookie(token: &str) -> String {
        format!(
            "{COOKIE}={token}; Path=/; Max-Age={LIFETIME_SECS}; Secure; HttpOnly; SameSite=Strict"
        )
    }

    /// The session token a `Cookie` header carries, if any.
    pub fn token_of(cookie_header: &str) -> Option<&str> {
        cookie_header
            .split(';')
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .map(|(_, v)| v)
            .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lasts_its_quarter_of_an_hour_and_no_longer() {
        let s = Sessions::default();
        let token = s.open("r1", 1_000).unwrap();
        assert_eq!(
            s.report(&token, 1_000 + LIFETIME_SECS - 1).as_deref(),
            Some("r1")
        );
        assert_eq!(s.report(&token, 1_000 + LIFETIME_SECS), None);
        let header = format!("lang=ro; {COOKIE}={token}");
        assert_eq!(Sessions::token_of(&header), Some(token.as_str()));
        assert_eq!(Sessions::token_of("cbr=short"), None);
        assert!(Sessions::cookie(&token).contains("Secure; HttpOnly; SameSite=Strict"));
    }
}
