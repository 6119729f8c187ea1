//! Charts for the studies (`sweep`, `sensitivity`): drawn with plotters as SVG, and rasterised
//! to PNG by resvg with DejaVu Sans embedded in prunec (`src/fonts`, Bitstream Vera license),
//! so that a chart looks the same on every machine and needs no system fonts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;

const FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
const SIZE: (u32, u32) = (960, 600);

/// One line of a chart.
pub struct Series {
    /// Its legend entry.
    pub label: String,
    /// Its points, in order of x.
    pub points: Vec<(f64, f64)>,
}

/// A line chart.
pub struct Chart<'a> {
    /// The title.
    pub title: &'a str,
    /// The x axis's description.
    pub x_label: &'a str,
    /// The y axis's description.
    pub y_label: &'a str,
    /// A logarithmic y axis (perplexities span orders of magnitude).
    pub log_y: bool,
    /// The lines.
    pub series: &'a [Series],
    /// A horizontal reference line (the unpruned model), with its legend entry.
    pub reference: Option<(&'a str, f64)>,
    /// The x values are whole numbers (layers): ticks without decimals.
    pub integer_x: bool,
    /// Where the legend goes (away from the points that matter).
    pub legend: SeriesLabelPosition,
}

fn plot_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the chart: {e}")
}

impl Chart<'_> {
    /// The chart as an SVG document.
    pub fn svg(&self) -> Result<String> {
        let points = self.series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for &(x, y) in points {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if let Some((_, r)) = self.reference {
            (y0, y1) = (y0.min(r), y1.max(r));
        }
        if !(x0.is_finite() && y0.is_finite()) {
            return Err(anyhow!("nothing to plot: no finite point"));
        }
        let span = x1 - x0;
        let pad_x = if span > 0.0 { span * 0.05 } else { x0.abs().max(1.0) * 0.1 };
        let (x0, x1) = (x0 - pad_x, x1 + pad_x);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            root.fill(&WHITE).map_err(plot_err)?;
            let mut builder = ChartBuilder::on(&root);
            builder.caption(self.title, ("sans-serif", 26)).margin(16).x_label_area_size(56).y_label_area_size(80);
            let palette = [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(148, 103, 189), RGBColor(255, 127, 14), RGBColor(140, 86, 75), RGBColor(227, 119, 194), RGBColor(23, 190, 207)];
            macro_rules! draw {
                ($chart:expr) => {{
                    let mut chart = $chart;
                    let x_fmt = |x: &f64| if self.integer_x { format!("{x:.0}") } else { format!("{x}") };
                    chart
                        .configure_mesh()
                        .x_label_formatter(&x_fmt)
                        .x_desc(self.x_label)
                        .y_desc(self.y_label)
                        .label_style(("sans-serif", 16))
                        .axis_desc_style(("sans-serif", 18))
                        .draw()
                        .map_err(plot_err)?;
                    for (k, s) in self.series.iter().enumerate() {
                        let color = palette[k % palette.len()];
                        let pts: Vec<(f64, f64)> = s.points.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
                        chart
                            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                            .map_err(plot_err)?
                            .label(s.label.as_str())
                            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2)));
                        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled()))).map_err(plot_err)?;
                    }
                    if let Some((label, r)) = self.reference {
                        chart
                            .draw_series(LineSeries::new(vec![(x0, r), (x1, r)], BLACK.mix(0.6).stroke_width(1)))
                            .map_err(plot_err)?
                            .label(label)
                            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], BLACK.mix(0.6)));
                    }
                    chart
                        .configure_series_labels()
                        .position(self.legend.clone())
                        .label_font(("sans-serif", 16))
                        .background_style(WHITE.mix(0.85))
                        .border_style(BLACK)
                        .draw()
                        .map_err(plot_err)?;
                }};
            }
            if self.log_y {
                let (lo, hi) = (y0.max(f64::MIN_POSITIVE) / 1.25, y1 * 1.25);
                draw!(builder.build_cartesian_2d(x0..x1, (lo..hi).log_scale()).map_err(plot_err)?);
            } else {
                let pad = ((y1 - y0) * 0.08).max(1e-9);
                draw!(builder.build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad)).map_err(plot_err)?);
            }
            root.present().map_err(plot_err)?;
        }
        Ok(svg)
    }

    /// Writes `<stem>.svg` and `<stem>.png`; returns their paths.
    pub fn write(&self, stem: &Path, inputs: &[&Path], force: bool) -> Result<[PathBuf; 2]> {
        let svg = self.svg()?;
        let png = rasterize(&svg)?;
        let (svg_path, png_path) = (stem.with_extension("svg"), stem.with_extension("png"));
        for (dest, bytes) in [(&svg_path, svg.as_bytes()), (&png_path, png.as_slice())] {
            prunec_backends::AtomicPath::write(dest, bytes, inputs, force)?;
        }
        Ok([svg_path, png_path])
    }
}

/// An SVG document as PNG bytes, its text in the embedded font.
pub fn rasterize(svg: &str) -> Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut fonts = usvg::fontdb::Database::new();
    fonts.load_font_data(FONT.to_vec());
    fonts.set_sans_serif_family("DejaVu Sans");
    let options = usvg::Options { fontdb: Arc::new(fonts), font_family: "DejaVu Sans".into(), ..Default::default() };
    let tree = usvg::Tree::from_str(svg, &options).context("reading the SVG chart")?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| anyhow!("empty chart"))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().context("encoding the PNG chart")
}
