//! When each request is meant to go out, and which worker drives which users
//! and tasks. Pure functions: the runner supplies the clock.

use std::time::Duration;

/// Open loop: request `ticket` (0-based) is due `ticket / rate` seconds after
/// the start, whatever happened to the requests before it. Latency is counted
/// from this instant, so a stalled server shows up as latency instead of
/// silently lowering the rate (coordinated omission).
pub fn intended_offset(ticket: u64, rate: f64) -> Duration {
    // Exact for any ticket a run can reach (< 2^53).
    #[allow(clippy::cast_precision_loss)]
    let seconds = ticket as f64 / rate;
    Duration::from_secs_f64(seconds.max(0.0))
}

/// How many tickets fall inside the run: the open loop's planned request count.
pub fn tickets_within(duration: Duration, rate: f64) -> u64 {
    let planned = (duration.as_secs_f64() * rate).ceil();
    if planned.is_finite() && planned > 0.0 {
        // Bounded by the checks on rate and duration; truncation is intended.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = planned as u64;
        n
    } else {
        0
    }
}

/// A worker's share of the load: users it acts for and, per user, the indexes
/// of the seeded tasks only it touches (so If-Match versions it tracks are
/// not raced by another worker of this run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// (user index, task indexes within that user's seeded tasks).
    pub users: Vec<(usize, Vec<usize>)>,
}

/// Spreads `users` users, each with `tasks` seeded tasks, over `workers`
/// workers. With at least as many users as workers each user belongs to one
/// worker; with fewer, the workers sharing a user split its tasks.
pub fn assign(users: usize, tasks: usize, workers: usize) -> Vec<Share> {
    let workers = workers.max(1);
    let mut shares = vec![Share { users: Vec::new() }; workers];
    if users == 0 {
        return shares;
    }
    if users >= workers {
        for user in 0..users {
            shares[user % workers]
                .users
                .push((user, (0..tasks).collect()));
        }
    } else {
        for (worker, share) in shares.iter_mut().enumerate() {
            let user = worker % users;
            // Workers on this user are user, user + users, user + 2 users, ...
            let sharing = (workers - user).div_ceil(users);
            let rank = worker / users;
            let mine = (0..tasks).filter(|t| t % sharing == rank).collect();
            share.users.push((user, mine));
        }
    }
    shares
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn tickets_are_evenly_spaced_at_the_rate() {
        assert_eq!(intended_offset(0, 100.0), Duration::ZERO);
        assert_eq!(intended_offset(1, 100.0), Duration::from_millis(10));
        assert_eq!(intended_offset(250, 100.0), Duration::from_millis(2500));
        assert_eq!(intended_offset(3, 0.5), Duration::from_secs(6));
        // Spacing does not drift over a long run.
        let a = intended_offset(1_000_000, 1000.0);
        assert_eq!(a, Duration::from_secs(1000));
    }

    #[test]
    fn a_run_plans_rate_times_duration_tickets() {
        assert_eq!(tickets_within(Duration::from_secs(30), 200.0), 6000);
        assert_eq!(tickets_within(Duration::from_millis(1500), 3.0), 5);
        assert_eq!(tickets_within(Duration::from_secs(1), 0.1), 1);
    }

    fn owners(shares: &[Share]) -> Vec<(usize, usize)> {
        // (user, task) pairs over all workers.
        shares
            .iter()
            .flat_map(|s| {
                s.users
                    .iter()
                    .flat_map(|(u, ts)| ts.iter().map(move |t| (*u, *t)))
            })
            .collect()
    }

    #[test]
    fn every_task_has_exactly_one_worker() {
        for (users, tasks, workers) in [(64, 30, 32), (10, 30, 32), (1, 5, 8), (7, 3, 3), (3, 0, 5)]
        {
            let shares = assign(users, tasks, workers);
            assert_eq!(shares.len(), workers);
            let pairs = owners(&shares);
            let unique: BTreeSet<_> = pairs.iter().copied().collect();
            assert_eq!(pairs.len(), unique.len(), "{users} {tasks} {workers}");
            assert_eq!(pairs.len(), users * tasks, "{users} {tasks} {workers}");
        }
    }

    #[test]
    fn every_worker_acts_for_some_user_and_every_user_is_used() {
        for (users, workers) in [(64, 32), (10, 32), (1, 8), (32, 32)] {
            let shares = assign(users, 4, workers);
            assert!(shares.iter().all(|s| !s.users.is_empty()));
            let used: BTreeSet<_> = shares
                .iter()
                .flat_map(|s| s.users.iter().map(|(u, _)| *u))
                .collect();
            assert_eq!(used.len(), users);
        }
    }

    #[test]
    fn more_users_than_workers_are_dealt_round_robin() {
        let shares = assign(5, 2, 2);
        let users: Vec<Vec<usize>> = shares
            .iter()
            .map(|s| s.users.iter().map(|(u, _)| *u).collect())
            .collect();
        assert_eq!(users, vec![vec![0, 2, 4], vec![1, 3]]);
    }
}
