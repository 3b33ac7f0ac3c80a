//! `dreamnet report DIR --out FILE.svg`: the journal as a picture (plotters, SVG): the
//! rate over time, the reaction latency over time (mean and max per bucket; see
//! `dreamnet_bus::analytics::JournalAnalyzer` for what the journal can say about
//! latency), and the type mix.

use std::io::Write;
use std::path::Path;

use dreamnet_bus::analytics::JournalAnalysis;
use plotters::prelude::*;

use crate::error::CliError;
use crate::filter::Filter;
use crate::format::type_label;
use crate::json::Obj;

/// The picture's size in pixels.
const SIZE: (u32, u32) = (1000, 1200);
/// The most types drawn in the mix; the rest are summed into one bar.
const MAX_TYPES: usize = 12;

/// `report DIR --out FILE [filters] [--bucket-ms MS]`.
pub fn report(
    out: &mut dyn Write,
    dir: &Path,
    svg: &Path,
    filter: &Filter,
    bucket_ns: u64,
    json: bool,
) -> Result<u8, CliError> {
    let (a, tombstones) = crate::stats::analyze(dir, filter, bucket_ns, json)?;
    if a.records == 0 {
        return Err(CliError::NothingToPlot(dir.to_owned()));
    }
    draw(svg, &a).map_err(|e| CliError::Plot {
        path: svg.to_owned(),
        reason: e.to_string(),
    })?;
    let reactions: u64 = a.latency_by_type.iter().map(|l| l.count).sum();
    if json {
        let o = Obj::new()
            .bool("ok", true)
            .str("svg", &svg.display().to_string())
            .num("records", a.records)
            .num("tombstones", tombstones)
            .num("buckets", a.buckets.len() as u64)
            .num("bucket_ns", a.bucket_ns)
            .num("types", a.by_type.len() as u64)
            .num("reactions", reactions);
        writeln!(out, "{}", o.done())?;
    } else {
        writeln!(
            out,
            "wrote {}: {} records in {} buckets of {} ms, {} types, {} reactions with a latency",
            svg.display(),
            a.records,
            a.buckets.len(),
            a.bucket_ns as f64 / 1e6,
            a.by_type.len(),
            reactions
        )?;
    }
    Ok(0)
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw(path: &Path, a: &JournalAnalysis) -> DrawResult {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled("dreamnet journal report", ("sans-serif", 24))?;
    let panels = root.split_evenly((3, 1));
    let origin = a.buckets.first().map_or(0, |b| b.start_ns);
    let secs = |ns: u64| (ns - origin) as f64 / 1e9;
    let end = a
        .buckets
        .last()
        .map_or(1.0, |b| secs(b.start_ns) + a.bucket_ns as f64 / 1e9);

    // 1. Rate over time.
    let rates: Vec<(f64, f64)> = a
        .buckets
        .iter()
        .map(|b| (secs(b.start_ns), b.rate_per_s))
        .collect();
    let top = rates.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let mut chart = ChartBuilder::on(&panels[0])
        .caption("events per second", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..end.max(1e-9), 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first bucket")
        .y_desc("events/s")
        .draw()?;
    chart.draw_series(LineSeries::new(rates.iter().copied(), BLUE.stroke_width(2)))?;
    chart.draw_series(PointSeries::of_element(
        rates.iter().copied(),
        2,
        BLUE.filled(),
        &|c, s, st| Circle::new(c, s, st),
    ))?;

    // 2. Reaction latency over time.
    let mean: Vec<(f64, f64)> = a
        .buckets
        .iter()
        .filter_map(|b| Some((secs(b.start_ns), b.latency_mean_ns? / 1e6)))
        .collect();
    let max: Vec<(f64, f64)> = a
        .buckets
        .iter()
        .filter_map(|b| Some((secs(b.start_ns), b.latency_max_ns? as f64 / 1e6)))
        .collect();
    let top = max.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-3) * 1.1;
    let mut chart = ChartBuilder::on(&panels[1])
        .caption(
            "reaction latency (publish of a cause -> publish of its effect)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..end.max(1e-9), 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first bucket")
        .y_desc("ms")
        .draw()?;
    if mean.is_empty() {
        panels[1].draw(&Text::new(
            "no event in the journal names a cause (Event::caused_by) among the records read",
            (120, 120),
            ("sans-serif", 16),
        ))?;
    } else {
        chart
            .draw_series(LineSeries::new(mean, GREEN.stroke_width(2)))?
            .label("mean")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
        chart
            .draw_series(LineSeries::new(max, RED.stroke_width(2)))?
            .label("max")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }

    // 3. Type mix.
    let mut mix: Vec<(String, u64)> = a
        .by_type
        .iter()
        .take(MAX_TYPES)
        .map(|(t, n)| (type_label(t.raw()), *n))
        .collect();
    let rest: u64 = a.by_type.iter().skip(MAX_TYPES).map(|(_, n)| n).sum();
    if rest > 0 {
        mix.push(("other".to_owned(), rest));
    }
    let top = mix.iter().map(|m| m.1).max().unwrap_or(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(&panels[2])
        .caption("type mix (records per type)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(140)
        .build_cartesian_2d(0.0..top, 0.0..mix.len() as f64)?;
    let names: Vec<String> = mix.iter().map(|m| m.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(mix.len() * 2 + 1)
        .y_label_formatter(&|y| {
            // Label the middle of each bar only.
            let i = (*y - 0.5).round();
            if (*y - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_desc("records")
        .draw()?;
    chart.draw_series(mix.iter().enumerate().map(|(i, (_, n))| {
        let y = i as f64;
        Rectangle::new(
            [(0.0, y + 0.15), (*n as f64, y + 0.85)],
            BLUE.mix(0.6).filled(),
        )
    }))?;
    root.present()?;
    Ok(())
}
