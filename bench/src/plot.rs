//! `loadgen --plot FILE.svg`: the latency percentile distribution of each implementation,
//! drawn like HdrHistogram's plotter: the x axis is `1 / (1 - p)` on a log scale, so 90 %,
//! 99 %, 99.9 %, ... are evenly spaced and the tail gets as much room as the median. The
//! y axis (latency) is logarithmic too, so a sub-microsecond median and a millisecond
//! tail are both readable. SVG only (plotters' SVG backend; no font or bitmap libraries).

use std::error::Error;
use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// The rightmost percentile drawn: 99.9999 % (x = 10^6).
const MAX_X: f64 = 1e6;

/// The points of one distribution: (1 / (1 - p), latency in microseconds), at
/// HdrHistogram's percentile steps (5 per halving of the distance to 100 %), the last
/// one pinned to the maximum.
pub fn points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    if h.is_empty() {
        return out;
    }
    for v in h.iter_quantiles(5) {
        let q = v.quantile_iterated_to();
        let x = if q >= 1.0 {
            MAX_X
        } else {
            (1.0 / (1.0 - q)).min(MAX_X)
        };
        let us = (v.value_iterated_to() as f64 / 1e3).max(1e-3);
        out.push((x, us));
        if x >= MAX_X {
            break;
        }
    }
    out
}

/// The percentile an x position stands for, as an axis label ("50%", "99.9%").
fn label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let s = format!("{p:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}%")
}

/// A latency axis label from microseconds: "250 ns", "3 us", "12 ms".
fn latency_label(us: f64) -> String {
    if us < 1.0 {
        format!("{:.0} ns", us * 1e3)
    } else if us < 1e3 {
        format!("{us:.0} us")
    } else if us < 1e6 {
        format!("{:.0} ms", us / 1e3)
    } else {
        format!("{:.0} s", us / 1e6)
    }
}

/// Line colours: distinct on white, in a fixed order (ours first).
const COLOURS: [RGBColor; 6] = [
    RGBColor(200, 30, 45),
    RGBColor(30, 90, 200),
    RGBColor(20, 140, 60),
    RGBColor(120, 60, 170),
    RGBColor(230, 120, 0),
    RGBColor(60, 60, 60),
];

/// Writes the plot of `series` (label, histogram in nanoseconds) to `path`.
pub fn write_svg(
    path: &Path,
    title: &str,
    series: &[(String, &Histogram<u64>)],
) -> Result<(), Box<dyn Error>> {
    let drawn: Vec<(&String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, h)| (name, points(h)))
        .filter(|(_, p)| !p.is_empty())
        .collect();
    if drawn.is_empty() {
        return Err("no latency samples to plot".into());
    }
    let ys = drawn.iter().flat_map(|(_, p)| p.iter().map(|&(_, y)| y));
    let (lo, hi) = ys.fold((f64::MAX, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
    let root = SVGBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .margin_right(56)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (1.0..MAX_X).log_scale(),
            ((lo / 1.5).max(1e-3)..hi * 1.5).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency")
        .x_labels(7)
        .x_label_formatter(&|x| label(*x))
        .y_label_formatter(&|y| latency_label(*y))
        .draw()?;
    for (i, (name, pts)) in drawn.into_iter().enumerate() {
        let color = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_percentile() {
        assert_eq!(label(2.0), "50%");
        assert_eq!(label(10.0), "90%");
        assert_eq!(label(1000.0), "99.9%");
    }

    #[test]
    fn latency_labels_pick_a_unit() {
        assert_eq!(latency_label(0.25), "250 ns");
        assert_eq!(latency_label(3.0), "3 us");
        assert_eq!(latency_label(12_000.0), "12 ms");
    }

    #[test]
    fn points_rise_to_the_maximum_at_the_right_edge() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
        for v in 1..=10_000u64 {
            h.record(v * 100).unwrap();
        }
        let p = points(&h);
        assert!(p.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let (x, y) = *p.last().unwrap();
        assert_eq!(x, MAX_X);
        // 1,000,000 ns = 1000 us, within the histogram's 3 significant digits.
        assert!((y - 1000.0).abs() <= 1.0, "last point {y} us");
        // The median (x = 2) is near 500 us.
        let median = p.iter().find(|&&(x, _)| x >= 2.0).unwrap().1;
        assert!((median - 500.0).abs() < 10.0, "median {median} us");
    }
}
