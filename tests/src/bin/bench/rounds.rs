//! Parts (b) and (d) in rounds: each pass of the worker or of a Flink sink lies between two ceiling
//! passes and is compared with their mean, and Flink's passes lie between the worker's. On a machine
//! whose speed drifts within a run (the same driver pass has cost Cassandra half again as much CPU at
//! the end of a run as at its start, and a restarted Cassandra keeps speeding up for minutes as its
//! JIT compiles), one pair of passes cannot decide a ratio within a tenth, and two sinks measured
//! minutes apart cannot be compared by their records/s alone; each is compared with the ceiling
//! around it, and several rounds show how far the ratios spread.

use std::fmt::Write;

use crate::{CpuSplit, WorkerRun, flink, percentile};

/// What runs between two ceiling passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// The worker, in round n (from 1).
    Worker(u32),
    /// One of Flink's sinks.
    Flink(flink::Mode),
}

/// The order of the passes: the worker's rounds, with Flink's sinks one after each round but the
/// last, so that Flink runs in the middle of the run rather than at one end of its drift.
pub fn schedule(rounds: u32, flink: &[flink::Mode]) -> Vec<Subject> {
    let mut order = Vec::new();
    let mut flink = flink.iter();
    for round in 1..=rounds {
        order.push(Subject::Worker(round));
        if round < rounds {
            order.extend(flink.next().map(|mode| Subject::Flink(*mode)));
        }
    }
    order.extend(flink.map(|mode| Subject::Flink(*mode)));
    order
}

/// What one pass measured.
pub enum Pass {
    Worker(WorkerRun),
    Flink(flink::Run),
}

/// The table the worker drains into in round `round` (from 1): a table of its own per round, so
/// that every round's rows are checked, not only the last's.
pub fn table(round: u32) -> String {
    format!("values_{round}")
}

/// One ceiling pass: the driver alone at its best concurrency.
#[derive(Debug, Clone, Copy)]
pub struct Ceiling {
    /// Records per second.
    pub rate: f64,
    /// CPU seconds per 100,000 records (the client is the driver).
    pub cpu: CpuSplit,
}

/// A pass of the worker or of Flink, and the ceiling passes on either side of it.
pub struct Around<R> {
    pub run: R,
    pub before: Ceiling,
    pub after: Ceiling,
}

/// A worker pass between two ceiling passes.
pub type Round = Around<WorkerRun>;

/// A Flink pass between two ceiling passes.
pub type FlinkPass = Around<flink::Run>;

impl<R> Around<R> {
    /// The ceiling the pass is compared with: the mean of the passes around it.
    fn ceiling_rate(&self) -> f64 {
        (self.before.rate + self.after.rate) / 2.0
    }

    /// Cassandra's CPU per 100,000 records under the driver alone, the mean of the passes around.
    fn ceiling_cassandra(&self) -> f64 {
        (self.before.cpu.cassandra + self.after.cpu.cassandra) / 2.0
    }
}

impl Round {
    /// b/a: the worker end to end, start-up included.
    fn end_to_end(&self, records: usize) -> f64 {
        records as f64 / self.run.elapsed.as_secs_f64() / self.ceiling_rate()
    }

    /// The worker's records/s from its first commit on, start-up excluded.
    fn steady_rate(&self, records: usize) -> Option<f64> {
        let (first, committed, _) = self.run.first_commit?;
        Some((records as f64 - committed as f64) / (self.run.elapsed - first).as_secs_f64())
    }

    /// b'/a.
    fn steady(&self, records: usize) -> Option<f64> {
        Some(self.steady_rate(records)? / self.ceiling_rate())
    }

    /// Cassandra's CPU per record under the worker from its first commit on, over the same under the
    /// driver alone.
    fn cassandra(&self) -> Option<f64> {
        let (_, _, cpu) = self.run.first_commit?;
        Some(cpu.cassandra / self.ceiling_cassandra())
    }
}

impl FlinkPass {
    /// Flink's records/s, process start to the last record committed (JVM start included), over the
    /// mean of the ceiling passes around it: d/a.
    fn over_ceiling(&self, records: usize) -> f64 {
        records as f64 / self.run.wall.as_secs_f64() / self.ceiling_rate()
    }

    /// Cassandra's CPU per record under Flink over the same under the driver alone around it.
    fn cassandra(&self) -> f64 {
        self.run.cassandra_per_100k / self.ceiling_cassandra()
    }
}

/// The mean of the values present, or NaN when none is.
fn mean(values: impl Iterator<Item = Option<f64>>) -> f64 {
    let present: Vec<f64> = values.flatten().collect();
    present.iter().sum::<f64>() / present.len() as f64
}

/// The largest peak RSS of the worker over the rounds, MiB.
fn largest_peak(rounds: &[Round]) -> f64 {
    rounds
        .iter()
        .map(|round| round.run.peak_mib)
        .fold(0.0, f64::max)
}

fn ratio(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |value| format!("{value:.2}"))
}

/// A Markdown table with a column per round and, for the ratios, their mean.
pub fn table_of(rounds: &[Round], records: usize) -> String {
    let mut out = String::new();
    let header: Vec<String> = (1..=rounds.len()).map(|n| format!("round {n}")).collect();
    let _ = writeln!(out, "| measure | {} | mean |", header.join(" | "));
    let _ = writeln!(out, "| --- |{} --- |", " --- |".repeat(rounds.len()));
    let mut row = |name: &str, cell: &dyn Fn(&Round) -> String, summary: String| {
        let cells: Vec<String> = rounds.iter().map(cell).collect();
        let _ = writeln!(out, "| {name} | {} | {summary} |", cells.join(" | "));
    };
    row(
        "(a) driver write ceiling before / after, records/s",
        &|round| format!("{:.0} / {:.0}", round.before.rate, round.after.rate),
        String::new(),
    );
    row(
        "(b) worker end to end, exactly-once, records/s",
        &|round| {
            format!(
                "{:.0} ({:.1} s)",
                records as f64 / round.run.elapsed.as_secs_f64(),
                round.run.elapsed.as_secs_f64()
            )
        },
        String::new(),
    );
    row(
        "(b') worker after its first commit, records/s",
        &|round| match (round.steady_rate(records), round.run.first_commit) {
            (Some(rate), Some((first, _, _))) => {
                format!("{rate:.0}; first commit at {:.2} s", first.as_secs_f64())
            }
            _ => "–".to_owned(),
        },
        String::new(),
    );
    row(
        "writes the worker sent per record (the rest left out as superseded)",
        &|round| format!("{:.3}", 1.0 - round.run.superseded / records as f64),
        String::new(),
    );
    row(
        "**b/a** (target ≥ 0.9)",
        &|round| format!("**{:.2}**", round.end_to_end(records)),
        format!(
            "**{:.2}**",
            mean(rounds.iter().map(|round| Some(round.end_to_end(records))))
        ),
    );
    row(
        "b'/a",
        &|round| ratio(round.steady(records)),
        format!(
            "{:.2}",
            mean(rounds.iter().map(|round| round.steady(records)))
        ),
    );
    row(
        "**Cassandra CPU per record, (b') ÷ mean of (a) around it** (target within 10 %)",
        &|round| format!("**{}**", ratio(round.cassandra())),
        format!(
            "**{:.2}**",
            mean(rounds.iter().map(|round| round.cassandra()))
        ),
    );
    row(
        "Cassandra CPU per 100k records: (a) before / (b') / (a) after",
        &|round| {
            format!(
                "{:.2} / {} / {:.2} s",
                round.before.cpu.cassandra,
                round.run.first_commit.map_or_else(
                    || "–".to_owned(),
                    |(_, _, cpu)| format!("{:.2}", cpu.cassandra)
                ),
                round.after.cpu.cassandra
            )
        },
        String::new(),
    );
    row(
        "Cassandra CPU from the worker's start to its first commit",
        &|round| {
            round
                .run
                .start_up
                .map_or_else(|| "–".to_owned(), |cpu| format!("{:.2} s", cpu.cassandra))
        },
        String::new(),
    );
    row(
        "client CPU per 100k records: driver (a) before / worker (b)",
        &|round| {
            format!(
                "{:.2} / {:.2} s",
                round.before.cpu.client, round.run.cpu.client
            )
        },
        String::new(),
    );
    row(
        "worker CPU, over its wall time",
        &|round| {
            format!(
                "{:.1} s over {:.1} s",
                round.run.cpu_seconds,
                round.run.elapsed.as_secs_f64()
            )
        },
        String::new(),
    );
    row(
        "checkpoint commit latency p50 / p99",
        &|round| {
            format!(
                "{:.1} / {:.1} ms ({} checkpoints)",
                percentile(&round.run.commits, 0.5),
                percentile(&round.run.commits, 0.99),
                round.run.commits.len()
            )
        },
        String::new(),
    );
    row(
        "**worker peak RSS** (target ≤ 64 MiB)",
        &|round| format!("**{:.1} MiB**", round.run.peak_mib),
        format!("largest **{:.1} MiB**", largest_peak(rounds)),
    );
    out
}

/// The worker against each Flink sink: records/s, and each over the ceiling around it, whose quotient
/// is the comparison that drift does not decide; then what each costs.
pub fn side_by_side(rounds: &[Round], flink: &[FlinkPass], records: usize, keys: usize) -> String {
    let per_round =
        |value: &dyn Fn(&Round) -> f64| mean(rounds.iter().map(|round| Some(value(round))));
    let worker_over_ceiling = per_round(&|round| round.end_to_end(records));
    let mut out = String::new();
    let names: Vec<&str> = flink
        .iter()
        .map(|pass| match pass.run.mode {
            flink::Mode::WriteAheadLog => "Flink, write-ahead log + CassandraCommitter",
            flink::Mode::Plain => "Flink, plain sink (at least once)",
        })
        .collect();
    let _ = writeln!(
        out,
        "| (d) side by side, same topic | worker, exactly-once (mean of {} rounds) | {} |",
        rounds.len(),
        names.join(" | ")
    );
    let _ = writeln!(out, "| --- | --- |{}", " --- |".repeat(flink.len()));
    let mut row = |name: &str, worker: String, cell: &dyn Fn(&FlinkPass) -> String| {
        let cells: Vec<String> = flink.iter().map(cell).collect();
        let _ = writeln!(out, "| {name} | {worker} | {} |", cells.join(" | "));
    };
    row(
        "records/s, process start to the last record committed",
        format!(
            "{:.0}",
            per_round(&|round| records as f64 / round.run.elapsed.as_secs_f64())
        ),
        &|pass| format!("{:.0}", records as f64 / pass.run.wall.as_secs_f64()),
    );
    row(
        "÷ the driver ceiling measured around it (b/a, d/a)",
        format!("{worker_over_ceiling:.2}"),
        &|pass| format!("{:.2}", pass.over_ceiling(records)),
    );
    row(
        "**worker ÷ this sink** (quotient of the row above)",
        "1.00".into(),
        &|pass| {
            format!(
                "**{:.2}**",
                worker_over_ceiling / pass.over_ceiling(records)
            )
        },
    );
    row(
        "wall time (of it, Flink's job runtime)",
        format!(
            "{:.1} s",
            per_round(&|round| round.run.elapsed.as_secs_f64())
        ),
        &|pass| {
            format!(
                "{:.1} s ({:.1} s)",
                pass.run.wall.as_secs_f64(),
                pass.run.net_runtime.as_secs_f64()
            )
        },
    );
    row(
        "client CPU s per 100,000 records",
        format!("{:.2}", per_round(&|round| round.run.cpu.client)),
        &|pass| format!("{:.2}", pass.run.cpu_seconds * 100_000.0 / records as f64),
    );
    row(
        "Cassandra CPU s per 100,000 records (÷ the driver's around it)",
        format!(
            "{:.2} ({:.2})",
            per_round(&|round| round.run.cpu.cassandra),
            per_round(&|round| round.run.cpu.cassandra / round.ceiling_cassandra())
        ),
        &|pass| {
            format!(
                "{:.2} ({:.2})",
                pass.run.cassandra_per_100k,
                pass.cassandra()
            )
        },
    );
    row(
        "client peak RSS",
        format!("{:.1} MiB (largest)", largest_peak(rounds)),
        &|pass| format!("{:.1} MiB", pass.run.peak_rss_mib),
    );
    row(
        "keys not at their last update (of all keys)",
        format!("0 of {keys}"),
        &|pass| format!("{} of {keys}", pass.run.stale),
    );
    row(
        "committer rows after the run",
        "one per partition".into(),
        &|pass| match pass.run.mode {
            flink::Mode::WriteAheadLog => {
                format!("{} (one per sink subtask)", pass.run.committer_rows)
            }
            flink::Mode::Plain => "none (no committer)".into(),
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cpu(cassandra: f64) -> CpuSplit {
        CpuSplit {
            cassandra,
            kafka: 0.0,
            client: 1.0,
        }
    }

    fn round(before: f64, after: f64, seconds: u64) -> Round {
        Round {
            run: WorkerRun {
                elapsed: Duration::from_secs(seconds),
                peak_mib: 50.0,
                cpu_seconds: 10.0,
                cpu: cpu(3.0),
                first_commit: Some((Duration::from_secs(1), 10_000, cpu(3.3))),
                start_up: Some(cpu(1.5)),
                commits: vec![2.0, 3.0],
                superseded: 0.0,
            },
            before: Ceiling {
                rate: before,
                cpu: cpu(2.0),
            },
            after: Ceiling {
                rate: after,
                cpu: cpu(4.0),
            },
        }
    }

    #[test]
    fn a_round_is_compared_with_the_mean_of_the_ceilings_around_it() {
        // 1,000,000 records in 20 s: 50,000/s against a mean ceiling of 50,000/s.
        let round = round(60_000.0, 40_000.0, 20);
        assert!((round.end_to_end(1_000_000) - 1.0).abs() < 1e-9);
        // 990,000 records after the first commit, in 19 s.
        let steady = round.steady(1_000_000).expect("a first commit");
        assert!((steady - 990_000.0 / 19.0 / 50_000.0).abs() < 1e-9);
        // 3.3 s against the mean of 2 and 4.
        assert!((round.cassandra().expect("a first commit") - 1.1).abs() < 1e-9);
    }

    #[test]
    fn the_table_has_a_column_per_round_and_the_mean_of_the_ratios() {
        let rounds = [round(50_000.0, 50_000.0, 20), round(50_000.0, 50_000.0, 40)];
        let table = table_of(&rounds, 1_000_000);
        let b_over_a = table
            .lines()
            .find(|line| line.starts_with("| **b/a**"))
            .expect("a b/a row");
        assert_eq!(
            b_over_a,
            "| **b/a** (target ≥ 0.9) | **1.00** | **0.50** | **0.75** |"
        );
        assert!(
            table
                .starts_with("| measure | round 1 | round 2 | mean |\n| --- | --- | --- | --- |\n")
        );
        assert!(table.contains("largest **50.0 MiB**"));
    }

    #[test]
    fn flink_runs_between_the_worker_rounds() {
        use Subject::{Flink, Worker};
        use flink::Mode::{Plain, WriteAheadLog};
        assert_eq!(
            schedule(3, &[WriteAheadLog, Plain]),
            [
                Worker(1),
                Flink(WriteAheadLog),
                Worker(2),
                Flink(Plain),
                Worker(3)
            ]
        );
        assert_eq!(
            schedule(1, &[WriteAheadLog, Plain]),
            [Worker(1), Flink(WriteAheadLog), Flink(Plain)]
        );
        assert_eq!(schedule(2, &[]), [Worker(1), Worker(2)]);
    }

    #[test]
    fn the_worker_and_flink_are_each_compared_with_their_own_ceiling() {
        // The worker at 1.0 of a ceiling of 50,000/s; Flink at 25,000/s against a ceiling that had
        // risen to 100,000/s: a quarter of it, so the worker is 4× Flink, not 2× as records/s say.
        let rounds = [round(50_000.0, 50_000.0, 20)];
        let flink = FlinkPass {
            run: flink::Run {
                mode: flink::Mode::WriteAheadLog,
                wall: std::time::Duration::from_secs(40),
                net_runtime: std::time::Duration::from_secs(35),
                cpu_seconds: 60.0,
                peak_rss_mib: 900.0,
                cassandra_per_100k: 3.0,
                stale: 99_000,
                committer_rows: 2,
            },
            before: Ceiling {
                rate: 100_000.0,
                cpu: cpu(2.0),
            },
            after: Ceiling {
                rate: 100_000.0,
                cpu: cpu(4.0),
            },
        };
        let table = side_by_side(&rounds, &[flink], 1_000_000, 100_000);
        assert!(
            table.contains(
                "| **worker ÷ this sink** (quotient of the row above) | 1.00 | **4.00** |"
            ),
            "{table}"
        );
        assert!(table.contains("| 50000 | 25000 |"), "{table}");
        assert!(table.contains("99000 of 100000"), "{table}");
    }

    #[test]
    fn a_missing_ratio_is_left_out_of_the_mean() {
        assert!((mean([Some(1.0), None, Some(2.0)].into_iter()) - 1.5).abs() < 1e-9);
        assert!(mean(std::iter::empty()).is_nan());
    }
}
