//! (e) How cost grows: one topic each of 6, 64 and 512 partitions, pre-filled with the same records,
//! drained by 1, 2 and 4 release workers started together. For each it measures throughput, the
//! workers' CPU and memory, Cassandra's CPU per record, and the start-up: how long until every
//! partition is claimed (the group's rebalances and one lightweight transaction per partition).

use std::time::{Duration, Instant};

use cassandra_sink_tests::Settings;
use cassandra_sink_tests::fixtures::create_topic;
use cassandra_sink_tests::worker::Worker;
use scylla::client::session::Session;

use crate::{Bench, CpuSplit, prefill, settle, sink_config, tables, usage};

/// Partition counts measured.
pub const PARTITIONS: [i32; 3] = [6, 64, 512];
/// Worker counts measured.
pub const WORKERS: [usize; 3] = [1, 2, 4];

/// One configuration's figures.
#[derive(Debug, Clone)]
pub struct Point {
    /// Kafka partitions.
    pub partitions: i32,
    /// Workers.
    pub workers: usize,
    /// From the workers' start until every record was committed.
    pub elapsed: Duration,
    /// From the workers' start until each owned some partitions and together all of them.
    pub claimed: Duration,
    /// Records per second over `elapsed`.
    pub rate: f64,
    /// The workers' CPU seconds per 100,000 records, together.
    pub worker_cpu: f64,
    /// The largest peak RSS of one worker, MiB.
    pub peak_rss_mib: f64,
    /// Cassandra's CPU seconds per 100,000 records.
    pub cassandra_cpu: f64,
}

/// Runs every configuration; `table` must exist and have been written once with every key.
pub async fn run(
    settings: &Settings,
    session: &Session,
    keyspace: &str,
    table: &str,
    bench: &Bench,
) -> anyhow::Result<Vec<Point>> {
    let mut points = Vec::new();
    for partitions in PARTITIONS {
        let topic = format!("{}-p{partitions}", keyspace.replace('_', "-"));
        create_topic(settings, &topic, partitions).await?;
        let sized = Bench {
            partitions,
            ..bench.clone()
        };
        eprintln!(
            "(e) {partitions} partitions: pre-filling {topic} with {} records",
            bench.records()
        );
        prefill(settings, &topic, &sized).await?;
        for workers in WORKERS {
            settle(session).await?;
            let point = drain(settings, session, keyspace, table, &topic, &sized, workers).await?;
            eprintln!(
                "  {workers} workers: {:.0} records/s, every partition claimed after {:.2} s",
                point.rate,
                point.claimed.as_secs_f64()
            );
            points.push(point);
        }
    }
    Ok(points)
}

/// `workers` workers of one new sink drain `topic` into `table`.
async fn drain(
    settings: &Settings,
    session: &Session,
    keyspace: &str,
    table: &str,
    topic: &str,
    bench: &Bench,
    workers: usize,
) -> anyhow::Result<Point> {
    let name = format!("p{}-w{workers}", bench.partitions);
    let dir = std::env::temp_dir().join(format!("{keyspace}-{name}"));
    let sink_id = format!("bench/{keyspace}/{name}");
    let config = sink_config(
        settings,
        &dir,
        &sink_id,
        &format!("{keyspace}.{table}"),
        topic,
        "guarantee: exactly-once\n",
    )?;
    let before = CpuSplit::sample(std::process::id());
    let started = Instant::now();
    let running: Vec<Worker> = (0..workers)
        .map(|index| Worker::start_binary(&bench.worker, &config, &format!("{name}-{index}"), &[]))
        .collect();
    let mut committed = tables::Committed::new(
        keyspace,
        &cassandra_sink_worker::committer::row_key(&sink_id, topic),
        bench.partitions,
    );
    let mut claimed = None;
    loop {
        if claimed.is_none() {
            let owned: Vec<f64> = running
                .iter()
                .map(|worker| {
                    worker
                        .metric("cassandra_sink_partitions_owned")
                        .unwrap_or(0.0)
                })
                .collect();
            if owned.iter().all(|owned| *owned > 0.0)
                && owned.iter().sum::<f64>() as i32 == bench.partitions
            {
                claimed = Some(started.elapsed());
            }
        }
        if claimed.is_some() && committed.records(session).await? as usize >= bench.records() {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "{workers} workers did not drain {topic} in 15 minutes:\n{}",
            running[0].log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = started.elapsed();
    let after = CpuSplit::sample(std::process::id());
    let mut worker_cpu = 0.0;
    let mut peak_rss_mib: f64 = 0.0;
    for worker in &running {
        let (peak, cpu) = usage(worker.pid())?;
        worker_cpu += cpu;
        peak_rss_mib = peak_rss_mib.max(peak);
    }
    for worker in running {
        anyhow::ensure!(
            worker.terminate(Duration::from_secs(60)).success(),
            "a worker did not stop cleanly"
        );
    }
    std::fs::remove_dir_all(dir).ok();
    let scale = 100_000.0 / bench.records() as f64;
    Ok(Point {
        partitions: bench.partitions,
        workers,
        elapsed,
        claimed: claimed.unwrap_or(elapsed),
        rate: bench.records() as f64 / elapsed.as_secs_f64(),
        worker_cpu: worker_cpu * scale,
        peak_rss_mib,
        cassandra_cpu: before.per_100k(after, bench.records()).cassandra,
    })
}

/// The figures as a Markdown table.
pub fn table(points: &[Point]) -> String {
    let mut text = String::from(
        "| partitions | workers | records/s (drained in) | every partition claimed after | workers' CPU per 100k records | largest worker peak RSS | Cassandra CPU per 100k records |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for point in points {
        text.push_str(&format!(
            "| {} | {} | {:.0} ({:.1} s) | {:.2} s | {:.2} s | {:.1} MiB | {:.2} s |\n",
            point.partitions,
            point.workers,
            point.rate,
            point.elapsed.as_secs_f64(),
            point.claimed.as_secs_f64(),
            point.worker_cpu,
            point.peak_rss_mib,
            point.cassandra_cpu
        ));
    }
    text
}

/// Two panels side by side, records/s and seconds until every partition is claimed, against the
/// number of workers, one line per partition count: an SVG document.
pub fn chart(points: &[Point], caption: &str) -> String {
    const WIDTH: f64 = 900.0;
    const HEIGHT: f64 = 380.0;
    const COLOURS: [&str; 3] = ["#1b6ca8", "#d1495b", "#2e933c"];
    let panel = |left: f64, title: &str, value: &dyn Fn(&Point) -> f64| {
        let (x0, y0, width, height) = (left + 60.0, 50.0, 340.0, 250.0);
        let top = points.iter().map(value).fold(0.0_f64, f64::max) * 1.15;
        let top = if top > 0.0 { top } else { 1.0 };
        let x = |workers: usize| {
            let index = WORKERS.iter().position(|w| *w == workers).unwrap_or(0) as f64;
            x0 + 30.0 + index * (width - 60.0) / (WORKERS.len() as f64 - 1.0)
        };
        let y = |v: f64| y0 + height - v / top * height;
        let mut svg = format!(
            "<text x=\"{:.0}\" y=\"30\" font-size=\"15\" text-anchor=\"middle\">{title}</text>\n\
             <line x1=\"{x0}\" y1=\"{:.0}\" x2=\"{:.0}\" y2=\"{:.0}\" stroke=\"#333\"/>\n\
             <line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{:.0}\" stroke=\"#333\"/>\n",
            x0 + width / 2.0,
            y0 + height,
            x0 + width,
            y0 + height,
            y0 + height,
        );
        for tick in 0..=4 {
            let v = top * f64::from(tick) / 4.0;
            let label = if top >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            };
            svg.push_str(&format!(
                "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{:.0}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\n\
                 <text x=\"{:.0}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{label}</text>\n",
                x0 + width,
                x0 - 6.0,
                y(v) + 4.0,
                y = y(v),
            ));
        }
        for workers in WORKERS {
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.0}\" font-size=\"11\" text-anchor=\"middle\">{workers}</text>\n",
                x(workers),
                y0 + height + 16.0
            ));
        }
        svg.push_str(&format!(
            "<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"12\" text-anchor=\"middle\">workers</text>\n",
            x0 + width / 2.0,
            y0 + height + 34.0
        ));
        for (partitions, colour) in PARTITIONS.iter().zip(COLOURS) {
            let line: Vec<String> = points
                .iter()
                .filter(|point| point.partitions == *partitions)
                .map(|point| format!("{:.1},{:.1}", x(point.workers), y(value(point))))
                .collect();
            svg.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
                line.join(" ")
            ));
            for point in line {
                let (px, py) = point.split_once(',').unwrap_or(("0", "0"));
                svg.push_str(&format!(
                    "<circle cx=\"{px}\" cy=\"{py}\" r=\"3.5\" fill=\"{colour}\"/>\n"
                ));
            }
        }
        svg
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    svg.push_str(&panel(0.0, "records/s", &|point| point.rate));
    svg.push_str(&panel(
        450.0,
        "seconds until every partition is claimed",
        &|point| point.claimed.as_secs_f64(),
    ));
    for (index, (partitions, colour)) in PARTITIONS.iter().zip(COLOURS).enumerate() {
        let left = 250.0 + index as f64 * 150.0;
        svg.push_str(&format!(
            "<rect x=\"{left}\" y=\"{:.0}\" width=\"14\" height=\"4\" fill=\"{colour}\"/>\n\
             <text x=\"{:.0}\" y=\"{:.0}\" font-size=\"12\">{partitions} partitions</text>\n",
            HEIGHT - 22.0,
            left + 20.0,
            HEIGHT - 17.0
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"10\" fill=\"#555\" text-anchor=\"middle\">{caption}</text>\n</svg>\n",
        WIDTH / 2.0,
        HEIGHT - 4.0
    ));
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(partitions: i32, workers: usize, rate: f64) -> Point {
        Point {
            partitions,
            workers,
            elapsed: Duration::from_secs(10),
            claimed: Duration::from_millis(500 * workers as u64),
            rate,
            worker_cpu: 1.0,
            peak_rss_mib: 50.0,
            cassandra_cpu: 2.0,
        }
    }

    #[test]
    fn the_chart_has_a_line_and_a_legend_entry_per_partition_count() {
        let points: Vec<Point> = PARTITIONS
            .iter()
            .flat_map(|partitions| {
                WORKERS
                    .iter()
                    .map(move |workers| point(*partitions, *workers, 1_000.0 * *workers as f64))
            })
            .collect();
        let svg = chart(&points, "test");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Two panels, one line per partition count in each.
        assert_eq!(svg.matches("<polyline").count(), 2 * PARTITIONS.len());
        assert_eq!(svg.matches("<circle").count(), 2 * points.len());
        for partitions in PARTITIONS {
            assert!(svg.contains(&format!("{partitions} partitions")));
        }
    }

    #[test]
    fn the_table_has_a_row_per_point() {
        let points = vec![point(6, 1, 1_000.0), point(64, 2, 2_000.0)];
        let table = table(&points);
        assert_eq!(table.lines().count(), 2 + points.len());
        assert!(table.contains("| 64 | 2 | 2000 (10.0 s) | 1.00 s |"));
    }
}
