//! List pages kept in memory, answered again without Postgres until the
//! projector says that their owner's rows changed.
//!
//! Correctness rests on one order: a commit's notice (which names its owners)
//! is applied here before the position it carries is published
//! (`ProjectionWatch`). A request stamps its owner's generation before it
//! reads Postgres; its page is kept under that stamp and served only while
//! the stamp is current. So a page served at position P reflects every commit
//! up to P: any later change to its owner was announced, and bumped the
//! generation, before P could be reported.
//!
//! Generations live in a fixed table of buckets (owners hashed into them), so
//! memory does not grow with the number of users; two owners sharing a
//! bucket only cost each other a few extra misses. While the listener is
//! down nothing is announced, so the cache is off until it is back.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::body::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use uuid::Uuid;

/// 4096 buckets of 8 bytes: 32 KiB, whatever the number of owners.
const BUCKETS: usize = 4096;
/// What an entry costs beyond its key and body (hash table slot, Arc, stamp).
const ENTRY_OVERHEAD: u64 = 128;
/// A typical page (20 tasks) is a few KiB; the estimate only sizes the table.
const TYPICAL_ENTRY: u64 = 8 * 1024;

#[derive(Clone, PartialEq, Eq, Hash)]
struct PageKey {
    owner: Uuid,
    /// The request's query string as sent: equal strings are equal queries.
    query: Box<str>,
}

#[derive(Clone)]
struct Page {
    stamp: Stamp,
    body: Bytes,
}

#[derive(Clone)]
struct PageWeight;

impl Weighter<PageKey, Page> for PageWeight {
    fn weight(&self, key: &PageKey, page: &Page) -> u64 {
        (key.query.len() + page.body.len()) as u64 + ENTRY_OVERHEAD
    }
}

/// The generations a page was read under; it is served only while both hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    epoch: u64,
    owner: u64,
}

pub struct PageCache {
    /// `None` when configured off (size 0).
    pages: Option<Cache<PageKey, Page, PageWeight>>,
    /// Bumped when every page may be stale (a rebuild, a lost listener).
    epoch: AtomicU64,
    owners: Box<[AtomicU64]>,
    hasher: RandomState,
    /// False while no notice can reach us: then nothing is served or kept.
    live: AtomicBool,
}

impl PageCache {
    /// A cache of at most `max_bytes` of pages; 0 turns it off. It starts
    /// off until the listener is connected (`resume`).
    pub fn new(max_bytes: u64) -> Self {
        let pages = (max_bytes > 0).then(|| {
            let estimated = usize::try_from(max_bytes / TYPICAL_ENTRY).unwrap_or(usize::MAX);
            Cache::with_weighter(estimated.max(16), max_bytes, PageWeight)
        });
        Self {
            pages,
            epoch: AtomicU64::new(0),
            owners: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
            live: AtomicBool::new(false),
        }
    }

    fn bucket(&self, owner: Uuid) -> &AtomicU64 {
        // The modulo keeps the index below BUCKETS, so it fits a usize.
        #[allow(clippy::cast_possible_truncation)]
        let index = (self.hasher.hash_one(owner) % BUCKETS as u64) as usize;
        &self.owners[index]
    }

    /// Take before reading Postgres; pass to `put` with what was read.
    pub fn stamp(&self, owner: Uuid) -> Stamp {
        Stamp {
            epoch: self.epoch.load(Ordering::SeqCst),
            owner: self.bucket(owner).load(Ordering::SeqCst),
        }
    }

    /// Whether notices reach us (the listener is connected).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    fn serves(&self) -> bool {
        self.pages.is_some() && self.live.load(Ordering::SeqCst)
    }

    /// The page kept for this owner and query, if it is still current.
    pub fn get(&self, owner: Uuid, query: &str) -> Option<Bytes> {
        let pages = self.pages.as_ref().filter(|_| self.serves())?;
        let key = PageKey {
            owner,
            query: query.into(),
        };
        let hit = pages
            .get(&key)
            .filter(|page| page.stamp == self.stamp(owner))
            .map(|page| page.body);
        metrics::counter!("tasklog_list_cache_total", "result" => if hit.is_some() { "hit" } else { "miss" })
            .increment(1);
        hit
    }

    /// Keeps a page read under `stamp`, unless its owner moved on meanwhile.
    pub fn put(&self, owner: Uuid, query: &str, stamp: Stamp, body: Bytes) {
        let Some(pages) = self.pages.as_ref().filter(|_| self.serves()) else {
            return;
        };
        if stamp != self.stamp(owner) {
            return;
        }
        let key = PageKey {
            owner,
            query: query.into(),
        };
        pages.insert(key, Page { stamp, body });
    }

    /// These owners' rows changed: their pages are stale.
    pub fn owners_changed<'a>(&self, owners: impl IntoIterator<Item = &'a Uuid>) {
        for owner in owners {
            self.bucket(*owner).fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Anyone's rows may have changed: every page is stale.
    pub fn all_changed(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        if let Some(pages) = &self.pages {
            pages.clear();
        }
    }

    /// No notice can reach us any more: serve nothing until `resume`.
    pub fn suspend(&self) {
        self.live.store(false, Ordering::SeqCst);
        self.all_changed();
    }

    /// Notices flow again. Call after `all_changed` and before publishing
    /// the position read when listening began.
    pub fn resume(&self) {
        self.live.store(true, Ordering::SeqCst);
    }

    /// Bytes held now (for tests and the metric).
    pub fn weight(&self) -> u64 {
        self.pages.as_ref().map_or(0, Cache::weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    fn live_cache() -> PageCache {
        let cache = PageCache::new(1 << 20);
        cache.resume();
        cache
    }

    #[test]
    fn a_page_kept_under_a_current_stamp_is_served_again() {
        let cache = live_cache();
        let owner = Uuid::new_v4();
        let stamp = cache.stamp(owner);
        cache.put(owner, "limit=5", stamp, body("page"));
        assert_eq!(cache.get(owner, "limit=5"), Some(body("page")));
        assert_eq!(cache.get(owner, "limit=6"), None, "another query");
        assert_eq!(cache.get(Uuid::new_v4(), "limit=5"), None, "another owner");
    }

    #[test]
    fn a_change_to_the_owner_makes_its_pages_stale_and_no_one_elses() {
        let cache = live_cache();
        let owner = Uuid::new_v4();
        // Owners sharing a bucket would cost each other a miss: pick another bucket.
        let other = std::iter::repeat_with(Uuid::new_v4)
            .find(|o| !std::ptr::eq(cache.bucket(*o), cache.bucket(owner)))
            .unwrap_or_default();
        cache.put(owner, "", cache.stamp(owner), body("mine"));
        cache.put(other, "", cache.stamp(other), body("theirs"));
        cache.owners_changed([&owner]);
        assert_eq!(cache.get(owner, ""), None);
        assert_eq!(cache.get(other, ""), Some(body("theirs")));
    }

    #[test]
    fn a_page_read_before_a_change_is_not_kept_after_it() {
        let cache = live_cache();
        let owner = Uuid::new_v4();
        let stamp = cache.stamp(owner);
        // The notice arrives while the request is reading Postgres.
        cache.owners_changed([&owner]);
        cache.put(owner, "", stamp, body("maybe stale"));
        assert_eq!(cache.get(owner, ""), None);
        let stamp = cache.stamp(owner);
        cache.all_changed();
        cache.put(owner, "", stamp, body("maybe stale"));
        assert_eq!(cache.get(owner, ""), None);
    }

    #[test]
    fn everything_goes_when_anyone_may_have_changed() {
        let cache = live_cache();
        let owners: Vec<Uuid> = (0..10).map(|_| Uuid::new_v4()).collect();
        for owner in &owners {
            cache.put(*owner, "", cache.stamp(*owner), body("page"));
        }
        assert!(cache.weight() > 0);
        cache.all_changed();
        assert!(owners.iter().all(|owner| cache.get(*owner, "").is_none()));
        assert_eq!(cache.weight(), 0);
    }

    #[test]
    fn nothing_is_served_or_kept_while_notices_cannot_arrive() {
        let cache = PageCache::new(1 << 20);
        let owner = Uuid::new_v4();
        cache.put(owner, "", cache.stamp(owner), body("page"));
        assert_eq!(
            cache.get(owner, ""),
            None,
            "not live before the first resume"
        );
        cache.resume();
        cache.put(owner, "", cache.stamp(owner), body("page"));
        cache.suspend();
        assert_eq!(cache.get(owner, ""), None);
        cache.put(owner, "", cache.stamp(owner), body("page"));
        cache.resume();
        assert_eq!(cache.get(owner, ""), None, "kept while suspended");
    }

    #[test]
    fn size_zero_turns_it_off() {
        let cache = PageCache::new(0);
        cache.resume();
        let owner = Uuid::new_v4();
        cache.put(owner, "", cache.stamp(owner), body("page"));
        assert_eq!(cache.get(owner, ""), None);
    }

    #[test]
    fn it_holds_no_more_than_its_size() {
        let cache = PageCache::new(64 * 1024);
        cache.resume();
        let owner = Uuid::new_v4();
        for i in 0..100 {
            cache.put(
                owner,
                &format!("page={i}"),
                cache.stamp(owner),
                body(&"x".repeat(4096)),
            );
        }
        assert!(cache.weight() <= 64 * 1024, "{}", cache.weight());
        assert!(cache.weight() > 0);
    }
}
