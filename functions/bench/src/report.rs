//! Figures as the benchmark reports them: printed as measured, and gathered into one table.

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub measured: String,
    /// The target, when the figure has one.
    pub target: Option<Target>,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub text: String,
    pub met: bool,
}

impl Figure {
    pub fn plain(name: impl Into<String>, measured: impl Into<String>) -> Figure {
        Figure {
            name: name.into(),
            measured: measured.into(),
            target: None,
        }
    }

    pub fn against(
        name: impl Into<String>,
        measured: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) -> Figure {
        Figure {
            name: name.into(),
            measured: measured.into(),
            target: Some(Target {
                text: target.into(),
                met,
            }),
        }
    }

    /// Prints the figure as one line.
    pub fn print(&self) {
        match &self.target {
            None => println!("  {}: {}", self.name, self.measured),
            Some(target) => println!(
                "  {}: {} (target {}: {})",
                self.name,
                self.measured,
                target.text,
                verdict(target.met)
            ),
        }
    }
}

pub fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// The figures of a run as a Markdown table.
pub fn print_table(figures: &[Figure]) {
    println!("| Figure | Measured | Target |");
    println!("| --- | --- | --- |");
    for figure in figures {
        let target = match &figure.target {
            None => String::new(),
            Some(target) if target.met => format!("{}: met", target.text),
            Some(target) => format!("{}: **missed**", target.text),
        };
        println!("| {} | {} | {} |", figure.name, figure.measured, target);
    }
}
