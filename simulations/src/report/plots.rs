//! Line charts drawn with `plotters`, each written as PNG and SVG: axes
//! fitted to the data, an optional log x axis, and the run's splits shaded
//! from start to heal. Text uses an embedded subset of DejaVu Sans, so
//! drawing needs no system fonts.

use std::{ops::Range, path::Path, sync::Once};

use plotters::{
    coord::{
        ranged1d::{AsRangedCoord, ValueFormatter},
        Shift,
    },
    prelude::*,
    style::{register_font, FontStyle},
};

const SIZE: (u32, u32) = (900, 520);
const FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");
/// Tableau 10: distinct in print and for most colour-blind readers.
const COLOURS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A named series of (x, y) points, in x order.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Points.
    pub points: Vec<(f64, f64)>,
}

/// A time span to shade (a split), from `start` to `end` (`None`: to the end
/// of the chart).
#[derive(Debug, Clone, Copy)]
pub struct Span {
    /// Start, x units.
    pub start: f64,
    /// End, x units.
    pub end: Option<f64>,
}

/// Everything one chart shows.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Caption.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// The lines.
    pub series: Vec<Series>,
    /// Spans shaded behind the lines, labelled "split".
    pub spans: Vec<Span>,
}

impl Chart {
    /// The x range: exactly the data's (from 0 on a linear axis; from the
    /// smallest positive value on a log axis).
    pub fn x_range(&self) -> Range<f64> {
        let xs = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0))
        };
        let max = xs().fold(f64::MIN, f64::max);
        if self.log_x {
            let min = xs().filter(|x| *x > 0.0).fold(f64::MAX, f64::min);
            if min > max || min == f64::MAX {
                return 1.0..10.0;
            }
            let (lo, hi) = (min * 0.9, max * 1.1);
            return lo..hi.max(lo * 10.0);
        }
        0.0..if max > 0.0 { max } else { 1.0 }
    }

    /// The y range: 0 to a little above the largest value.
    pub fn y_range(&self) -> Range<f64> {
        let max = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max);
        0.0..if max > 0.0 { max * 1.05 } else { 1.0 }
    }

    /// Writes `<stem>.png` and `<stem>.svg` into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(), String> {
        register_embedded_font();
        let png = dir.join(format!("{stem}.png"));
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        self.draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
        let svg = dir.join(format!("{stem}.svg"));
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        self.draw(&root)?;
        root.present().map_err(|e| e.to_string())
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let x = self.x_range();
        if self.log_x {
            self.draw_on(root, x.log_scale())
        } else {
            self.draw_on(root, x)
        }
    }

    fn draw_on<DB, X>(&self, root: &DrawingArea<DB, Shift>, x: X) -> Result<(), String>
    where
        DB: DrawingBackend,
        X: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
    {
        let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(err)?;
        let y = self.y_range();
        let (x_lo, x_hi) = {
            let r = self.x_range();
            (r.start, r.end)
        };
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(75)
            .build_cartesian_2d(x, y.clone())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .y_label_formatter(&|v| short_number(*v))
            .label_style(("sans-serif", 13))
            .axis_desc_style(("sans-serif", 15))
            .light_line_style(RGBColor(240, 240, 240))
            .bold_line_style(RGBColor(215, 215, 215))
            .draw()
            .map_err(err)?;
        let shade = RGBColor(255, 200, 120).mix(0.25);
        for span in &self.spans {
            let start = span.start.max(x_lo);
            let end = span.end.unwrap_or(x_hi).min(x_hi);
            if end <= start {
                continue;
            }
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(start, y.start), (end, y.end)],
                    shade.filled(),
                )))
                .map_err(err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    if span.end.is_some() {
                        "split (to heal)"
                    } else {
                        "split (never healed)"
                    },
                    (start, y.end),
                    ("sans-serif", 12).into_font().color(&RGBColor(150, 90, 0)),
                )))
                .map_err(err)?;
        }
        for (i, s) in self.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let style = colour.stroke_width(2);
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), style))
                .map_err(err)?
                .label(&s.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        }
        if !self.series.is_empty() {
            chart
                .configure_series_labels()
                .position(if self.log_x {
                    SeriesLabelPosition::LowerRight
                } else {
                    SeriesLabelPosition::UpperLeft
                })
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(190, 190, 190))
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(err)?;
        }
        Ok(())
    }
}

fn register_embedded_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            tracing::warn!("the embedded font did not load: plots will lack text");
        }
    });
}

/// `12k`, `3.4M`: short axis labels.
pub(super) fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(log_x: bool, points: Vec<(f64, f64)>) -> Chart {
        Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_x,
            series: vec![Series {
                name: "a".into(),
                points,
            }],
            spans: vec![Span {
                start: 1.0,
                end: Some(2.0),
            }],
        }
    }

    #[test]
    fn axes_fit_the_data() {
        let c = chart(false, vec![(0.0, 0.0), (61.3, 10.0)]);
        assert_eq!(c.x_range(), 0.0..61.3);
        assert!((c.y_range().end - 10.5).abs() < 1e-9);
        let c = chart(true, vec![(0.0, 0.1), (20.0, 0.5), (400.0, 1.0)]);
        let r = c.x_range();
        assert!(r.start > 0.0 && r.start <= 20.0 && r.end >= 400.0 && r.end < 500.0);
    }

    #[test]
    fn writes_png_and_svg_with_text() {
        let dir = tempfile::tempdir().unwrap();
        chart(false, vec![(0.0, 0.0), (3.0, 5.0)])
            .write(dir.path(), "c")
            .unwrap();
        chart(true, vec![(0.5, 0.0), (30.0, 1.0)])
            .write(dir.path(), "l")
            .unwrap();
        let png = std::fs::read(dir.path().join("c.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(dir.path().join("c.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("split (to heal)"));
        assert_eq!(short_number(12_345.0), "12k");
    }
}
