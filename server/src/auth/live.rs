//! The credentials open sockets hold: at most so many sockets each, closed within seconds once
//! the session or token stops being valid (revoked, expired, its user disabled), whichever
//! process or node revoked it.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How a request proved who it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Credential {
    /// The digest of a session id.
    Session(Vec<u8>),
    Token(i32),
    /// Anonymous watchers are counted per address.
    Anonymous(IpAddr),
}

struct Held {
    sockets: usize,
    revoked: CancellationToken,
}

#[derive(Clone)]
pub struct LiveCredentials {
    held: Arc<Mutex<HashMap<Credential, Held>>>,
    /// The server's shutdown: each credential's token is its child, so a socket waits on one
    /// token for both (each wait costs a lock on the token's waiter list, on every wake-up).
    shutdown: CancellationToken,
}

/// One socket's hold on its credential; released when dropped.
pub struct Hold {
    live: LiveCredentials,
    credential: Credential,
    /// Cancelled when the credential stops being valid, or the server shuts down.
    pub revoked: CancellationToken,
}

impl LiveCredentials {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            held: Arc::default(),
            shutdown,
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<Credential, Held>> {
        // Only whole updates happen under this lock: a poisoned map is intact.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a socket's place under `credential`, unless it already holds `max` of them.
    pub fn hold(&self, credential: &Credential, max: usize) -> Option<Hold> {
        let mut held = self.held();
        let entry = held.entry(credential.clone()).or_insert_with(|| Held {
            sockets: 0,
            revoked: self.shutdown.child_token(),
        });
        if entry.sockets >= max {
            return None;
        }
        entry.sockets += 1;
        Some(Hold {
            live: self.clone(),
            credential: credential.clone(),
            revoked: entry.revoked.clone(),
        })
    }

    /// Every `every`, asks the store which held sessions and tokens are still valid and closes
    /// the sockets of the others.
    pub fn spawn_watch(
        &self,
        store: Store,
        idle: Duration,
        every: Duration,
        until: CancellationToken,
    ) {
        let live = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            while until.run_until_cancelled(tick.tick()).await.is_some() {
                let (sessions, tokens) = {
                    let held = live.held();
                    let mut sessions = Vec::new();
                    let mut tokens = Vec::new();
                    for credential in held.keys() {
                        match credential {
                            Credential::Session(hash) => sessions.push(hash.clone()),
                            Credential::Token(id) => tokens.push(*id),
                            Credential::Anonymous(_) => {}
                        }
                    }
                    (sessions, tokens)
                };
                if sessions.is_empty() && tokens.is_empty() {
                    continue;
                }
                let (live_sessions, live_tokens) = match store
                    .still_live(&sessions, &tokens, idle.as_secs_f64())
                    .await
                {
                    Ok(live) => live,
                    // The database is away: nothing can be proven revoked; ask again next time.
                    Err(e) => {
                        tracing::warn!(error = %e, "checking open sockets' credentials failed");
                        continue;
                    }
                };
                // Only what was asked about: a credential whose first socket opened while the
                // question was out is checked next time, not taken for revoked.
                let revoked = sessions
                    .into_iter()
                    .filter(|hash| !live_sessions.contains(hash))
                    .map(Credential::Session)
                    .chain(
                        tokens
                            .into_iter()
                            .filter(|id| !live_tokens.contains(id))
                            .map(Credential::Token),
                    );
                let held = live.held();
                for credential in revoked {
                    if let Some(held) = held.get(&credential) {
                        held.revoked.cancel();
                    }
                }
            }
        });
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut held = self.live.held();
        if let Some(entry) = held.get_mut(&self.credential) {
            entry.sockets -= 1;
            if entry.sockets == 0 {
                held.remove(&self.credential);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_holds_at_most_its_sockets_and_frees_them_when_they_close() {
        let live = LiveCredentials::new(CancellationToken::new());
        let token = Credential::Token(7);
        let first = live.hold(&token, 2).unwrap();
        let second = live.hold(&token, 2).unwrap();
        assert!(live.hold(&token, 2).is_none());
        drop(first);
        let third = live.hold(&token, 2).unwrap();
        drop((second, third));
        assert!(live.held().is_empty());
    }
}
