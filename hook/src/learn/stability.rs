//! How many learning runs are enough: what each run of a workload added to what the runs
//! before it allowed. A record is stable when its last runs added nothing; while the last run
//! still adds items, the workload has behaviour that was not seen yet and enforcing the
//! profile would refuse it. Used by `profile generate --previous` and by the daemon, which
//! fold each run into the record of the earlier ones and write the verdict into the profile's
//! description, and by `profile merge`, which reports it for its inputs in the order given
//! (its result stays order-independent: no verdict in it).
use anyhow::Result;

use crate::profile::{self, diff::allowed_by_b_not_a, merge::union, Profile};

/// The description line that carries the count (one per profile; replaced on each merge).
pub const RUNS_PREFIX: &str = "Learn runs:";

/// The verdict of a record of one run.
pub const ONE_RUN: &str = "Learn runs: 1; one record only: not known to be stable (learn more runs and fold them in with `profile generate --previous` or `profile merge`; stable when the last runs add nothing)";

/// What one run added to the union of the runs before it (the first run adds everything).
#[derive(Debug, Clone)]
pub struct RunAdded {
    /// Lines as `profile diff` prints them (what this run allows that the earlier did not).
    pub added: Vec<String>,
}

/// The runs recorded in a profile's description (`Learn runs: N ...`), 1 if none is stated.
pub fn runs_in(p: &Profile) -> usize {
    p.description
        .as_deref()
        .unwrap_or("")
        .lines()
        .find_map(|l| l.trim().strip_prefix(RUNS_PREFIX))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.trim_end_matches(';').parse().ok())
        .unwrap_or(1)
}

/// What each of `runs` (oldest first) added to those before it. Profiles with `extends` are
/// compared as written (their bases are not resolved here).
pub fn added_per_run(runs: &[Profile]) -> Result<Vec<RunAdded>> {
    let mut out = Vec::new();
    let mut so_far: Option<Profile> = None;
    for p in runs {
        let added = match &so_far {
            None => vec!["(first run)".to_string()],
            Some(u) => allowed_by_b_not_a(&profile::compile(u)?, &profile::compile(p)?),
        };
        out.push(RunAdded { added });
        so_far = Some(match so_far {
            None => p.clone(),
            Some(u) => union(&[u, p.clone()], Some(&p.name))?,
        });
    }
    Ok(out)
}

/// The runs at the end of a merged record that added nothing (`stable: the last K run(s)`).
pub fn quiet_in(p: &Profile) -> usize {
    p.description
        .as_deref()
        .unwrap_or("")
        .lines()
        .find_map(|l| l.trim().strip_prefix(RUNS_PREFIX))
        .and_then(|r| r.split_once("stable: the last ").map(|(_, t)| t.to_string()))
        .and_then(|t| t.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// The verdict over `inputs` (oldest first) and what each added (`per_run`): one line for the
/// report and the description, starting with [`RUNS_PREFIX`]. An input that is itself a merge
/// counts with the runs it states, and its own quiet runs carry over when every later one
/// added nothing too.
pub fn verdict(inputs: &[Profile], per_run: &[RunAdded]) -> String {
    let total_runs: usize = inputs.iter().map(runs_in).sum();
    let mut quiet = per_run.iter().skip(1).rev().take_while(|r| r.added.is_empty()).count();
    if quiet + 1 == per_run.len() {
        quiet += inputs.first().map(quiet_in).unwrap_or(0);
    }
    match per_run.last() {
        None => format!("{RUNS_PREFIX} 0"),
        Some(_) if total_runs == 1 => ONE_RUN.to_string(),
        Some(last) if !last.added.is_empty() => format!(
            "{RUNS_PREFIX} {total_runs}; NOT STABLE: the last run still added {} new item(s) ({}): keep learning until runs add nothing",
            last.added.len(),
            last.added.join("; ")
        ),
        Some(_) => format!("{RUNS_PREFIX} {total_runs}; stable: the last {quiet} run(s) added nothing new"),
    }
}

/// `p` without a [`RUNS_PREFIX`] line (`profile merge` keeps its result order-independent and
/// idempotent: the verdict, which depends on the order of the runs, goes to its report only).
pub fn without_verdict(mut p: Profile) -> Profile {
    if let Some(d) = &p.description {
        let kept: Vec<&str> = d.lines().filter(|l| !l.trim().starts_with(RUNS_PREFIX)).collect();
        p.description = Some(kept.join("\n"));
    }
    p
}

/// `p` with its description's [`RUNS_PREFIX`] line replaced by `line`.
pub fn with_verdict(mut p: Profile, line: &str) -> Profile {
    let mut lines: Vec<String> = p
        .description
        .as_deref()
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim().starts_with(RUNS_PREFIX))
        .map(str::to_string)
        .collect();
    lines.push(line.to_string());
    p.description = Some(lines.join("\n"));
    p
}

/// A new run's profile folded into the record of the earlier runs (`previous`, as written by
/// an earlier fold or `profile merge`): their union under the new run's name, with the
/// verdict in its description. Returns it with the report lines (what the run added, the
/// verdict).
pub fn fold_into(previous: Profile, run: Profile) -> Result<(Profile, Vec<String>)> {
    let name = run.name.clone();
    let inputs = [previous, run];
    let per_run = added_per_run(&inputs)?;
    let mut notes = vec![if per_run[1].added.is_empty() {
        "this run added nothing new to the earlier runs' record".to_string()
    } else {
        format!(
            "this run added {} to the earlier runs' record: {}",
            per_run[1].added.len(),
            per_run[1].added.join("; ")
        )
    }];
    let line = verdict(&inputs, &per_run);
    notes.push(line.clone());
    let merged = union(&inputs, Some(&name))?;
    Ok((crate::profile::merge::canonical(with_verdict(merged, &line)), notes))
}
