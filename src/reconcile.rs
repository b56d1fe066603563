//! A final state for every call: a call that has not ended by its deadline (its
//! time limit plus `[calls] grace`) is reconciled. Its provider is asked whether
//! it still follows the call; if not, the call is closed as `lost` (Q.850 102),
//! with its legs and its CDR.

use std::sync::Arc;

use crate::app::App;
use crate::core::call::Event;
use crate::core::now_ms;
use crate::store::{calls, StoreError};

/// Overdue calls looked at per sweep at most; the next sweep takes the rest.
const PER_SWEEP: usize = 256;

const DETAIL: &str = "no end was heard by the call's deadline and its provider does not follow it";

/// Looks for overdue calls once, as of `now` (unix ms), and closes the lost
/// ones. Returns how many it closed.
pub async fn sweep(app: &App, now: i64) -> Result<usize, StoreError> {
    let due = app
        .store
        .read(move |c| calls::overdue(c, now, PER_SWEEP))
        .await?;
    if due.is_empty() {
        return Ok(0);
    }
    let rt = app.runtime();
    let mut closed = 0;
    for (id, provider) in due {
        let followed = provider
            .as_deref()
            .and_then(|p| rt.providers.get(p))
            .is_some_and(|p| p.is_following(id));
        if followed {
            continue;
        }
        let states = app
            .store
            .write(move |c| calls::apply(c, id, &[(Event::Lost, Some(DETAIL))], now))
            .await?;
        if !states.is_empty() {
            log::warn!("call {id}: lost: {DETAIL}");
            closed += 1;
        }
    }
    Ok(closed)
}

/// Sweeps every `[calls] reconcile_every` (read anew each round: reloads apply).
pub async fn run(app: Arc<App>) {
    loop {
        let every = app.runtime().config.calls.reconcile_every;
        tokio::time::sleep(every).await;
        if let Err(e) = sweep(&app, now_ms()).await {
            log::error!("reconciling overdue calls: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::call::{CallState, Leg, Side};
    use crate::store::calls::NewCall;
    use crate::store::{legs, Store};

    fn app(dir: &std::path::Path) -> (App, Store) {
        let text = format!(
            "[database]\npath = \"{}\"\n[[partner]]\nid = \"p\"\nsecret = \"s\"\nprovider = \"sim\"\n[[provider]]\nname = \"sim\"\nkind = \"sim\"\n",
            dir.join("t.db").display()
        );
        let app = App::for_test(&text);
        let store = app.store.clone();
        (app, store)
    }

    fn call(deadline: i64) -> NewCall {
        NewCall::for_test(0, deadline)
    }

    #[tokio::test]
    async fn an_overdue_call_nobody_follows_is_lost_with_its_legs_and_cdr() {
        let dir = tempfile::tempdir().unwrap();
        let (app, store) = app(dir.path());
        let (overdue, later, followed) = (call(1_000), call(9_000), call(1_000));
        let (a, b, f) = (overdue.id, later.id, followed.id);
        store
            .write(move |c| {
                for rec in [&overdue, &later, &followed] {
                    calls::insert(
                        c,
                        rec,
                        &[(Event::Originating, None), (Event::Accepted, None)],
                        None,
                    )?;
                    calls::apply(
                        c,
                        rec.id,
                        &[(Event::Ringing(Leg::first(Side::A)), None)],
                        10,
                    )?;
                }
                Ok(())
            })
            .await
            .unwrap();
        let _guard = app.following.follow(f);

        // The clock is the sweep's argument: before the deadline nothing happens.
        assert_eq!(sweep(&app, 999).await.unwrap(), 0);
        assert_eq!(sweep(&app, 5_000).await.unwrap(), 1);
        let (state, legs_now, cdr) = store
            .read(move |c| {
                let state: String = c.query_row(
                    "SELECT state FROM calls WHERE id = ?1",
                    [a.to_string()],
                    |r| r.get(0),
                )?;
                Ok((
                    state,
                    legs::legs_json(c, &a.to_string())?,
                    legs::cdr_json(c, &a.to_string())?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(state, CallState::Lost.as_str());
        assert_eq!(legs_now[0]["state"], "cancelled");
        assert_eq!(legs_now[0]["cause"], 102);
        let cdr = cdr.unwrap();
        assert_eq!(
            (cdr["state"].as_str(), cdr["cause"].as_i64()),
            (Some("lost"), Some(102))
        );
        // The call not yet due and the call the provider still follows are left alone,
        // and a lost call is not closed twice.
        assert_eq!(sweep(&app, 5_000).await.unwrap(), 0);
        for id in [b, f] {
            let state: String = store
                .read(move |c| {
                    c.query_row(
                        "SELECT state FROM calls WHERE id = ?1",
                        [id.to_string()],
                        |r| r.get(0),
                    )
                })
                .await
                .unwrap();
            assert_eq!(state, "dialing_a");
        }
        store.shutdown();
    }
}
