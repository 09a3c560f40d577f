//! The result table (each figure beside its baseline and the ratio), the goals, and JSON.

use serde_json::{Value, json};

/// One line of the table.
pub struct Row {
    pub measure: String,
    pub value: Option<f64>,
    pub unit: &'static str,
    pub baseline_name: String,
    pub baseline: Option<f64>,
    /// Why the figure is missing, or a remark.
    pub note: String,
}

impl Row {
    pub fn new(measure: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Row {
            measure: measure.into(),
            value: Some(value),
            unit,
            baseline_name: String::new(),
            baseline: None,
            note: String::new(),
        }
    }

    pub fn missing(measure: impl Into<String>, unit: &'static str, why: &str) -> Self {
        Row {
            measure: measure.into(),
            value: None,
            unit,
            baseline_name: String::new(),
            baseline: None,
            note: format!("not available ({why})"),
        }
    }

    pub fn against(mut self, name: impl Into<String>, baseline: Option<f64>) -> Self {
        self.baseline_name = name.into();
        self.baseline = baseline;
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    pub fn ratio(&self) -> Option<f64> {
        match (self.value, self.baseline) {
            (Some(v), Some(b)) if b > 0.0 => Some(v / b),
            _ => None,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "measure": self.measure,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline_name,
            "baseline_value": self.baseline,
            "ratio": self.ratio(),
            "note": self.note,
        })
    }
}

/// A goal of issue 6 and whether this run met it (`None`: not measurable in this run).
pub struct Goal {
    pub text: String,
    pub actual: String,
    pub pass: Option<bool>,
}

impl Goal {
    /// `value / baseline >= min`.
    pub fn ratio_at_least(text: &str, row: Option<&Row>, min: f64) -> Self {
        match row.and_then(Row::ratio) {
            Some(r) => Goal {
                text: text.into(),
                actual: format!("ratio {r:.2}"),
                pass: Some(r >= min),
            },
            None => Goal::not_measured(text, row),
        }
    }

    /// `value / baseline <= max`.
    pub fn ratio_at_most(text: &str, row: Option<&Row>, max: f64) -> Self {
        match row.and_then(Row::ratio) {
            Some(r) => Goal {
                text: text.into(),
                actual: format!("ratio {r:.3}"),
                pass: Some(r <= max),
            },
            None => Goal::not_measured(text, row),
        }
    }

    /// `value <= max`.
    pub fn at_most(text: &str, row: Option<&Row>, max: f64) -> Self {
        match row.and_then(|r| r.value) {
            Some(v) => Goal {
                text: text.into(),
                actual: format!("{v:.2}"),
                pass: Some(v <= max),
            },
            None => Goal::not_measured(text, row),
        }
    }

    /// `value < max`.
    pub fn below(text: &str, row: Option<&Row>, max: f64) -> Self {
        match row.and_then(|r| r.value) {
            Some(v) => Goal {
                text: text.into(),
                actual: format!("{v:.2}"),
                pass: Some(v < max),
            },
            None => Goal::not_measured(text, row),
        }
    }

    fn not_measured(text: &str, row: Option<&Row>) -> Self {
        Goal {
            text: text.into(),
            actual: row.map(|r| r.note.clone()).unwrap_or_default(),
            pass: None,
        }
    }

    fn verdict(&self) -> &'static str {
        match self.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a",
        }
    }

    fn to_json(&self) -> Value {
        json!({"goal": self.text, "actual": self.actual, "pass": self.pass})
    }
}

fn figure(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "—".into(),
        Some(v) if unit == "ms" => format!("{v:.2} ms"),
        Some(v) if unit == "µs" => format!("{v:.0} µs"),
        Some(v) if unit == "B" => format!("{v:.0} B"),
        Some(v) if unit == "count" => format!("{v:.2}"),
        Some(v) if v >= 100.0 => format!("{:.0}/s", v),
        Some(v) => format!("{v:.1}/s"),
    }
}

/// The table and the goals, as printed at the end of a run.
pub fn render(rows: &[Row], goals: &[Goal]) -> String {
    let lines: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.measure.clone(),
                if r.value.is_some() {
                    figure(r.value, r.unit)
                } else {
                    r.note.clone()
                },
                r.baseline_name.clone(),
                figure(r.baseline, r.unit),
                r.ratio().map(|x| format!("{x:.2}")).unwrap_or("—".into()),
            ]
        })
        .collect();
    let header = ["measure", "service", "baseline", "baseline figure", "ratio"];
    let mut width = header.map(|h| h.chars().count());
    for l in &lines {
        for (w, c) in width.iter_mut().zip(l) {
            *w = (*w).max(c.chars().count());
        }
    }
    let fmt = |cells: &[String]| {
        let mut s = String::from("|");
        for (c, w) in cells.iter().zip(width) {
            s.push_str(&format!(" {c}{} |", " ".repeat(w - c.chars().count())));
        }
        s
    };
    let mut out = String::new();
    out.push_str(&fmt(&header.map(String::from)));
    out.push('\n');
    out.push_str(&fmt(&width.map(|w| "-".repeat(w))));
    out.push('\n');
    for (l, r) in lines.iter().zip(rows) {
        out.push_str(&fmt(l));
        if r.value.is_some() && !r.note.is_empty() {
            out.push_str(&format!(" {}", r.note));
        }
        out.push('\n');
    }
    out.push_str("\nGoals (issue 6):\n");
    for g in goals {
        out.push_str(&format!("  [{}] {} — {}\n", g.verdict(), g.text, g.actual));
    }
    out
}

pub fn rows_json(rows: &[Row]) -> Value {
    Value::Array(rows.iter().map(Row::to_json).collect())
}

pub fn goals_json(goals: &[Goal]) -> Value {
    Value::Array(goals.iter().map(Goal::to_json).collect())
}
