//! CPU time spent by the system under test during the measured window, from
//! `/proc`: a watched process and every descendant it has (Postgres's
//! postmaster brings its backends), so the report can say how many
//! microseconds of CPU each acknowledged request cost the whole system, a
//! figure that holds on any machine where throughput ratios hold only in one
//! run.

use std::collections::{BTreeMap, HashMap};
use std::fs;

use serde::Serialize;

/// `/proc/<pid>/stat` counts in clock ticks; Linux's USER_HZ is 100 on every
/// architecture it exposes to user space.
const TICKS_PER_S: u64 = 100;

/// A process's `/proc/<pid>/stat` fields that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// utime + stime of the process itself (all its threads), in ticks.
    pub own: u64,
    /// cutime + cstime: children it has waited for, in ticks.
    pub reaped: u64,
    /// For a Postgres backend, the database it serves (from its title,
    /// `postgres: <user> <database> <client> ...`).
    pub database: Option<String>,
}

/// The database of a Postgres backend's process title; `None` for other
/// processes and for the server's own workers (WAL writer, checkpointer...).
pub fn backend_database(cmdline: &str) -> Option<String> {
    let title = cmdline.trim_end_matches('\0').strip_prefix("postgres: ")?;
    let mut words = title.split_whitespace();
    let (_user, database, client) = (words.next()?, words.next()?, words.next()?);
    // A backend's third word is its client: host(port), [local] or an address.
    (client.contains('(') || client.starts_with('[') || client.contains('.'))
        .then(|| database.to_owned())
}

/// Parses a `/proc/<pid>/stat` line. The command name is in parentheses and
/// may hold spaces or parentheses itself, so fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<Stat> {
    let rest = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let num = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Stat {
        ppid: fields.get(1)?.parse().ok()?,
        own: num(11)? + num(12)?,
        reaped: num(13)? + num(14)?,
        database: None,
    })
}

fn all_stats() -> HashMap<u32, Stat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let line = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut stat = parse_stat(&line)?;
            if line.contains("(postgres)") {
                let cmdline =
                    fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                stat.database = backend_database(&cmdline);
            }
            Some((pid, stat))
        })
        .collect()
}

/// Ticks used by `root` and its live descendants, plus what `root` reaped.
/// With `database`, Postgres backends of other databases are left out (other
/// work on a shared server), and so is what the root reaped, which no longer
/// says whose it was: the services under test keep their connections open.
pub fn tree_ticks(stats: &HashMap<u32, Stat>, root: u32, database: Option<&str>) -> Option<u64> {
    let first = stats.get(&root)?;
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (pid, stat) in stats {
        children.entry(stat.ppid).or_default().push(*pid);
    }
    let mut total = if database.is_some() { 0 } else { first.reaped };
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        if let Some(stat) = stats.get(&pid) {
            let other_database = matches!((database, &stat.database),
                (Some(wanted), Some(served)) if wanted != served);
            if !other_database {
                total += stat.own;
            }
        }
        if let Some(kids) = children.get(&pid) {
            todo.extend(kids);
        }
    }
    Some(total)
}

/// Ticks per watched name at one moment; Postgres backends count only when
/// they serve `database` (if given).
pub fn sample(watched: &[(String, u32)], database: Option<&str>) -> BTreeMap<String, (u32, u64)> {
    let stats = all_stats();
    watched
        .iter()
        .filter_map(|(name, pid)| Some((name.clone(), (*pid, tree_ticks(&stats, *pid, database)?))))
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    pub pid: u32,
    /// CPU time of the process tree over the measured window.
    pub cpu_ms: u64,
    /// `cpu_ms` per acknowledged request, in microseconds.
    pub per_ok_us: f64,
}

/// What each watched tree used between two samples, per acknowledged request.
pub fn between(
    before: &BTreeMap<String, (u32, u64)>,
    after: &BTreeMap<String, (u32, u64)>,
    ok: u64,
) -> BTreeMap<String, CpuUse> {
    after
        .iter()
        .filter_map(|(name, (pid, end))| {
            let (_, start) = before.get(name)?;
            let cpu_ms = end.saturating_sub(*start) * 1000 / TICKS_PER_S;
            #[allow(clippy::cast_precision_loss)]
            let per_ok_us = cpu_ms as f64 * 1000.0 / ok.max(1) as f64;
            Some((
                name.clone(),
                CpuUse {
                    pid: *pid,
                    cpu_ms,
                    per_ok_us,
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_counted_from_the_last_parenthesis_of_the_name() {
        let line = "42 (post (gres) x) S 7 42 42 0 -1 4194560 100 0 0 0 \
                    250 50 30 20 20 0 1 0 100 1000 10";
        let stat = parse_stat(line).unwrap_or_else(|| panic!("parses"));
        assert_eq!((stat.ppid, stat.own, stat.reaped), (7, 300, 50));
    }

    #[test]
    fn a_tree_counts_descendants_and_what_the_root_reaped_but_not_strangers() {
        let stat = |ppid, own, reaped, database: Option<&str>| Stat {
            ppid,
            own,
            reaped,
            database: database.map(str::to_owned),
        };
        let stats = HashMap::from([
            (10, stat(1, 5, 100, None)),
            (11, stat(10, 7, 0, Some("bench"))),
            (12, stat(11, 3, 0, None)),
            (13, stat(10, 40, 0, Some("other"))),
            (20, stat(1, 1_000, 0, None)),
        ]);
        assert_eq!(tree_ticks(&stats, 10, None), Some(155));
        // Only the backends of `bench`, the server's own workers, nothing reaped.
        assert_eq!(tree_ticks(&stats, 10, Some("bench")), Some(15));
        assert_eq!(tree_ticks(&stats, 99, None), None);
    }

    #[test]
    fn a_backend_title_names_its_database_and_a_worker_title_none() {
        let title = backend_database;
        assert_eq!(
            title("postgres: postgres tasklog_bench 127.0.0.1(5432) idle\0").as_deref(),
            Some("tasklog_bench")
        );
        assert_eq!(
            title("postgres: app db [local] SELECT").as_deref(),
            Some("db")
        );
        assert_eq!(title("postgres: walwriter "), None);
        assert_eq!(title("postgres: autovacuum launcher "), None);
        assert_eq!(title("/usr/lib/postgresql/15/bin/postgres -D /x"), None);
    }

    /// The spinner is a process of its own: this test process runs other
    /// tests on other threads at the same time, so its own CPU may exceed
    /// the wall time of one thread.
    #[test]
    fn a_spinning_process_uses_cpu_that_a_sample_sees() {
        let mut spinner = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("sh runs");
        let watched = vec![("spinner".to_owned(), spinner.id())];
        let start = std::time::Instant::now();
        let before = sample(&watched, None);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let after = sample(&watched, None);
        let wall_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let _ = spinner.kill();
        let _ = spinner.wait();
        let used = between(&before, &after, 10);
        let spun = used.get("spinner").unwrap_or_else(|| panic!("sampled"));
        // Spinning 300 ms gets at least one 10 ms tick even on a loaded
        // machine, and never more CPU than one thread's wall time.
        assert!(spun.cpu_ms >= 10, "{spun:?}");
        assert!(spun.cpu_ms <= wall_ms + 20, "{spun:?} in {wall_ms} ms");
        assert!((spun.per_ok_us - spun.cpu_ms as f64 * 100.0).abs() < 1e-6);
    }
}
