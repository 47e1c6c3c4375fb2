//! The one executor for network steps: plan's token checks and SMTP proofs,
//! apply's revocations and proofs. Each item runs as its own task, at most
//! `parallelism` at once; the results are handed back one by one, in the
//! order they finish, to a caller that may store each before the next is
//! read (a rotated token, a consent's grant). A [`Tracker`] hears of each
//! step's start and end.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::progress::Tracker;

/// Runs `work` on every `(name, item)`, at most `parallelism` at a time;
/// `done` gets each result as it finishes and says whether it went well.
pub async fn each<T, R, F, Fut>(
    items: Vec<(String, T)>,
    parallelism: usize,
    progress: Arc<dyn Tracker>,
    work: F,
    mut done: impl FnMut(String, R) -> bool,
) where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = R> + Send,
{
    let permits = Arc::new(Semaphore::new(parallelism.max(1)));
    let mut tasks = JoinSet::new();
    for (name, item) in items {
        let permits = Arc::clone(&permits);
        let progress = Arc::clone(&progress);
        let work = work.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            progress.started(&name);
            let result = work(item).await;
            (name, result)
        });
    }
    while let Some(finished) = tasks.join_next().await {
        let (name, result) = finished.expect("a network step does not panic");
        let ok = done(name.clone(), result);
        progress.finished(&name, ok);
    }
}

/// The runtime for the network edges (token endpoint, SMTP), made by the
/// commands that need one.
pub fn runtime() -> Result<tokio::runtime::Runtime, crate::error::Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| crate::error::Error::Io {
            action: "start the network runtime for",
            path: "mailform".into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Default)]
    struct Count {
        started: AtomicUsize,
        ended: Mutex<Vec<(String, bool)>>,
    }

    impl Tracker for Count {
        fn started(&self, _: &str) {
            self.started.fetch_add(1, Ordering::SeqCst);
        }
        fn finished(&self, name: &str, ok: bool) {
            self.ended.lock().unwrap().push((name.to_string(), ok));
        }
    }

    #[test]
    fn never_more_than_parallelism_at_once_and_every_result_handed_back() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let count = Arc::new(Count::default());
        // In flight, counted inside the work itself.
        let running = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let items: Vec<(String, u64)> = (0..40).map(|i| (format!("a{i}"), i)).collect();
        let mut seen = Vec::new();
        let work = {
            let running = Arc::clone(&running);
            move |i: u64| {
                let running = Arc::clone(&running);
                async move {
                    let now = running.0.fetch_add(1, Ordering::SeqCst) + 1;
                    running.1.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(5 + i % 3)).await;
                    running.0.fetch_sub(1, Ordering::SeqCst);
                    i * 2
                }
            }
        };
        runtime.block_on(each(
            items,
            7,
            Arc::clone(&count) as Arc<dyn Tracker>,
            work,
            |name, r| {
                seen.push((name, r));
                r % 4 == 0
            },
        ));
        assert_eq!(seen.len(), 40);
        let most = running.1.load(Ordering::SeqCst);
        assert!(most <= 7, "{most} at once");
        assert!(most >= 2, "it ran in parallel");
        assert_eq!(count.started.load(Ordering::SeqCst), 40);
        let ended = count.ended.lock().unwrap();
        assert_eq!(ended.len(), 40);
        assert_eq!(ended.iter().filter(|(_, ok)| *ok).count(), 20);
    }
}
