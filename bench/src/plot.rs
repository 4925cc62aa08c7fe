//! The fan-out plot (S1): the job's wall time against the number of nodes,
//! with two round trips and the target for reference.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

/// One node count of S1.
pub struct FanoutPoint {
    pub nodes: u32,
    /// `duration_ms` of every repetition.
    pub runs_ms: Vec<f64>,
    pub median_ms: f64,
    /// Two round trips measured against that cluster, ms.
    pub two_rtt_ms: f64,
    /// Median wall time of the plain client doing the same fan-out, ms.
    pub raw_ms: f64,
    /// The job's HTTP stack alone doing the job's requests (the better
    /// median of its two runtimes), ms.
    pub stack_ms: f64,
}

pub fn fanout(path: &Path, points: &[FanoutPoint], latency_ms: u64) -> Result<()> {
    let max_nodes = points.iter().map(|p| p.nodes).max().unwrap_or(1);
    let max_ms = points
        .iter()
        .flat_map(|p| p.runs_ms.iter().copied().chain([p.two_rtt_ms * 1.2]))
        .fold(0.0_f64, f64::max);
    let x_max = f64::from(max_nodes) * 1.05;
    let y_max = (max_ms * 1.15).max(1.0);

    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let caption = format!("api-consumer: 1 group fanned out, node latency {latency_ms} ms");
    let axes = Axes {
        x_max,
        y_max,
        x_desc: "nodes",
        y_desc: "wall time, ms",
    };
    let mut chart = frame(&root, &caption, &axes)?;

    let two_rtt: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (f64::from(p.nodes), p.two_rtt_ms))
        .collect();
    chart
        .draw_series(LineSeries::new(two_rtt.clone(), BLACK.stroke_width(1)))
        .map_err(plot_error)?
        .label("2 round trips (probe + write), measured")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    let red = RGBColor(200, 40, 40);
    chart
        .draw_series(DashedLineSeries::new(
            two_rtt.iter().map(|&(x, y)| (x, y * 1.2)),
            6,
            4,
            red.stroke_width(1),
        ))
        .map_err(plot_error)?
        .label("target: 1.2 x 2 round trips")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red));

    let grey = RGBColor(120, 120, 120);
    chart
        .draw_series(DashedLineSeries::new(
            points.iter().map(|p| (f64::from(p.nodes), p.raw_ms)),
            2,
            3,
            grey.stroke_width(2),
        ))
        .map_err(plot_error)?
        .label("plain client: a thread per node, connect + 2 GETs (median)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(2)));

    let green = RGBColor(20, 140, 70);
    chart
        .draw_series(DashedLineSeries::new(
            points.iter().map(|p| (f64::from(p.nodes), p.stack_ms)),
            6,
            3,
            green.stroke_width(2),
        ))
        .map_err(plot_error)?
        .label("the job's HTTP stack alone (reqwest, no job logic; median)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], green.stroke_width(2)));

    let blue = RGBColor(30, 90, 200);
    chart
        .draw_series(
            LineSeries::new(
                points.iter().map(|p| (f64::from(p.nodes), p.median_ms)),
                blue.stroke_width(2),
            )
            .point_size(4),
        )
        .map_err(plot_error)?
        .label("api-consumer duration_ms (median; dots: each run)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], blue.stroke_width(2)));
    chart
        .draw_series(points.iter().flat_map(|p| {
            p.runs_ms
                .iter()
                .map(move |&ms| Circle::new((f64::from(p.nodes), ms), 2, blue.mix(0.5)))
        }))
        .map_err(plot_error)?;

    finish(&root, &mut chart, SeriesLabelPosition::LowerRight)
}

/// A plot's axes: from 0 to their maxima, with their names.
struct Axes {
    x_max: f64,
    y_max: f64,
    x_desc: &'static str,
    y_desc: &'static str,
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A white 800 × 500 plot with its caption, axes and whole-number labels.
fn frame<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    axes: &Axes,
) -> Result<Chart<'a, 'b>> {
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..axes.x_max, 0.0..axes.y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .light_line_style(WHITE.mix(0.0))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()
        .map_err(plot_error)?;
    Ok(chart)
}

/// Draws the legend at `position` and writes the file.
fn finish<'a, 'b: 'a>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    chart: &mut Chart<'a, 'b>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

fn plot_error<E: std::fmt::Display>(error: E) -> anyhow::Error {
    anyhow!("cannot draw the plot: {error}")
}

/// One node latency of S8's sweep: groups/s with the prior state read per
/// group and from node lists.
pub struct LatencyPoint {
    pub latency_ms: u64,
    pub read_groups_per_s: f64,
    pub list_groups_per_s: f64,
}

/// S8's plot: groups/s against node latency, reads against lists.
pub fn latency(path: &Path, points: &[LatencyPoint], groups: usize) -> Result<()> {
    let x_max = points.iter().map(|p| p.latency_ms).max().unwrap_or(1) as f64 * 1.05;
    let y_max = points
        .iter()
        .map(|p| p.list_groups_per_s.max(p.read_groups_per_s))
        .fold(1.0_f64, f64::max)
        * 1.15;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let caption =
        format!("api-consumer: {groups} groups on 3 nodes, NODE_CONCURRENCY=8, CONCURRENCY=64");
    let axes = Axes {
        x_max,
        y_max,
        x_desc: "node latency, ms",
        y_desc: "groups per second",
    };
    let mut chart = frame(&root, &caption, &axes)?;
    let series = [
        (
            "PRIOR_STATE=list: one request per group and node",
            RGBColor(30, 90, 200),
            points
                .iter()
                .map(|p| (p.latency_ms as f64, p.list_groups_per_s))
                .collect::<Vec<_>>(),
        ),
        (
            "PRIOR_STATE=read: a read and a write per group and node",
            RGBColor(200, 40, 40),
            points
                .iter()
                .map(|p| (p.latency_ms as f64, p.read_groups_per_s))
                .collect::<Vec<_>>(),
        ),
    ];
    for (label, color, line) in series {
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)).point_size(4))
            .map_err(plot_error)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    finish(&root, &mut chart, SeriesLabelPosition::UpperRight)
}
