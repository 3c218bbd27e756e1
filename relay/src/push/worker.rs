//! The push workers: each takes a queued push, sends it ([`super::http::post`]) within the
//! request timeout, and acts on the answer.
//!
//! | answer                                  | what happens                                 |
//! | --------------------------------------- | -------------------------------------------- |
//! | 2xx                                     | `sent`                                       |
//! | 404, 410                                | `gone`: the subscription is dropped, durably |
//! | 429, 5xx, no connection, TLS, I/O error | `retried` after a backoff, up to the attempts; then `failed` |
//! | `Retry-After` over the cap              | `failed` (a notification that late is moot)  |
//! | any other status                        | `failed`                                     |
//! | no answer within the request timeout    | `timeout` (not retried: it may have arrived) |
//!
//! A push waiting for its retry sleeps in a small task of its own, not in a worker, and keeps
//! its place in the queue's bound.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use smol::{Executor, Timer};

use super::http::{self, Answer, Failure, Head};
use super::{Job, PushService, jwt_expiry, topic_text};
use crate::metrics::PushOutcome;
use crate::time::until;

/// What one attempt came to.
enum Attempt {
    Answer(Answer),
    Failed(Failure),
    TimedOut,
    /// Not sendable at all (the policy changed, no TLS roots, signing failed).
    Unsendable(String),
}

/// Send queued pushes until the relay stops (the executor that runs this drops it).
pub(crate) async fn run(push: Arc<PushService>, executor: Weak<Executor<'static>>) {
    while let Ok(job) = push.jobs.recv().await {
        let attempt = attempt(&push, &job).await;
        settle(&push, &executor, job, attempt).await;
    }
}

async fn attempt(push: &PushService, job: &Job) -> Attempt {
    let target = match push.policy.check(&job.endpoint) {
        Ok(target) => target,
        Err(reason) => return Attempt::Unsendable(reason.to_string()),
    };
    let tls = if target.tls {
        match push.tls() {
            Ok(tls) => Some(tls),
            Err(e) => return Attempt::Unsendable(e),
        }
    } else {
        None
    };
    let authorization =
        match push
            .vapid
            .authorization(&target.origin(), jwt_expiry(), &push.contact)
        {
            Ok(authorization) => authorization,
            Err(e) => return Attempt::Unsendable(e),
        };
    let topic = job.topic.as_ref().map(topic_text);
    let head = Head {
        target: &target,
        authorization: &authorization,
        urgency: job.urgency,
        topic: topic.as_deref(),
        ttl_secs: job.ttl_secs,
        body_len: job.body.len(),
    }
    .encode();
    let limits = &push.limits;
    let sent = until(
        Instant::now() + limits.push_request_timeout,
        http::post(
            &target,
            tls,
            head.as_bytes(),
            &job.body,
            limits.push_connect_timeout,
        ),
    )
    .await;
    match sent {
        None => Attempt::TimedOut,
        Some(Ok(answer)) => Attempt::Answer(answer),
        Some(Err(failure)) => Attempt::Failed(failure),
    }
}

/// Count the attempt and do what it calls for.
async fn settle(
    push: &PushService,
    executor: &Weak<Executor<'static>>,
    job: Job,
    attempt: Attempt,
) {
    let metrics = &push.metrics;
    let origin = push
        .policy
        .check(&job.endpoint)
        .map_or_else(|_| "an endpoint".to_string(), |t| t.origin());
    match attempt {
        Attempt::Answer(Answer { status, .. }) if (200..300).contains(&status) => {
            metrics.push(PushOutcome::Sent);
        }
        Attempt::Answer(Answer {
            status: 404 | 410, ..
        }) => {
            metrics.push(PushOutcome::Gone);
            push.forget(job.device, &job.endpoint).await;
        }
        Attempt::Answer(Answer {
            status,
            retry_after,
        }) if status == 429 || (500..600).contains(&status) => {
            let why = format!("answered {status}");
            retry(push, executor, job, retry_after, &why, &origin);
        }
        Attempt::Answer(Answer { status, .. }) => {
            metrics.push(PushOutcome::Failed);
            push.warn(format_args!("{} refused a push: {status}", origin));
        }
        Attempt::TimedOut => {
            metrics.push(PushOutcome::Timeout);
            push.warn(format_args!("{} did not answer a push in time", origin));
        }
        Attempt::Failed(Failure::NotPublic) => {
            metrics.push(PushOutcome::Failed);
            push.warn(format_args!("{} {}", origin, Failure::NotPublic.describe()));
        }
        Attempt::Failed(failure) => {
            retry(push, executor, job, None, &failure.describe(), &origin);
        }
        Attempt::Unsendable(reason) => {
            metrics.push(PushOutcome::Failed);
            push.warn(format_args!("cannot push to {}: {reason}", origin));
        }
    }
}

/// Queue `job` again after its backoff (or the service's `Retry-After`, when longer and
/// within the cap), or give up on it.
fn retry(
    push: &PushService,
    executor: &Weak<Executor<'static>>,
    mut job: Job,
    retry_after: Option<u64>,
    why: &str,
    origin: &str,
) {
    let limits = &push.limits;
    let give_up = |reason: &str| {
        push.metrics.push(PushOutcome::Failed);
        push.warn(format_args!("{} {why}; {reason}", origin));
    };
    job.attempt += 1;
    if job.attempt >= limits.push_attempts {
        return give_up("giving up on the push");
    }
    let asked = retry_after.map(Duration::from_secs);
    if asked.is_some_and(|asked| asked > limits.push_retry_after_max) {
        return give_up("it asked to wait longer than the relay holds a push");
    }
    let backoff = limits
        .push_retry_base
        .saturating_mul(1 << (job.attempt - 1).min(16));
    let delay = asked.map_or(backoff, |asked| asked.max(backoff));
    let Some(executor) = executor.upgrade() else {
        return; // The relay is stopping.
    };
    push.metrics.push(PushOutcome::Retried);
    let queue = push.queue.clone();
    executor
        .spawn(async move {
            Timer::after(delay).await;
            let _ = queue.try_send(job);
        })
        .detach();
}
