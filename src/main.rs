//! `course-operator`: print the CRD, render a CourseService offline, or run the controller.
#![forbid(unsafe_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use course_operator::observe::Observed;
use course_operator::zones::ZoneInventory;
use course_operator::{api, manifest, plan};

#[derive(Parser)]
#[command(name = "course-operator", version, about = "Kubernetes operator for highly available course applications")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CourseService CustomResourceDefinition as YAML.
    Crd,
    /// Print every child object the operator would create for a CourseService, without a cluster.
    Render {
        /// CourseService manifest (YAML or JSON); `-` reads standard input.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Zones to spread over (comma-separated), as if the cluster had Ready nodes in each.
        /// Default: `spec.zones`, else one implicit zone.
        #[arg(long, value_delimiter = ',')]
        zones: Vec<String>,
        #[command(flatten)]
        images: course_operator::render::Images,
    },
    /// Run the controller against the cluster of the current kubeconfig (or in-cluster config).
    Run(course_operator::controller::RunArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => print_crd(),
        Command::Render { file, zones, images } => render(&file, &zones, &images),
        Command::Run(args) => course_operator::controller::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_crd() -> anyhow::Result<()> {
    print!("{}", api::crd_yaml()?);
    Ok(())
}

fn render(file: &PathBuf, zones: &[String], images: &course_operator::render::Images) -> anyhow::Result<()> {
    images.check().map_err(anyhow::Error::msg)?;
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let cs = manifest::parse(&text).with_context(|| format!("{} is not a valid CourseService", file.display()))?;
    let inventory = if zones.is_empty() {
        ZoneInventory::healthy_zones(&cs.spec.zones)
    } else {
        ZoneInventory::healthy_zones(zones)
    };
    let desired = plan::desired(&cs, &inventory.for_spec(&cs.spec.zones), &Observed::default(), images)
        .with_context(|| format!("{} is not a valid CourseService", file.display()))?;
    print!("{}", course_operator::render::to_yaml(&desired.children)?);
    Ok(())
}
