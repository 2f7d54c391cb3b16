//! `kubectl course`: watch and steer CourseService rollouts. Uses the kubeconfig like kubectl.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

use course_operator::api::CourseService;
use course_operator::labels::ROLLOUT_ACTION;
use course_operator::plugin;
use course_operator::rollout::UserAction;

#[derive(Parser)]
#[command(name = "kubectl-course", version, about = "Watch and steer CourseService rollouts")]
struct Cli {
    /// Namespace (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Strategy, step, weight, per-zone readiness and conditions.
    Status {
        name: String,
        /// Keep showing it as it changes.
        #[arg(short, long)]
        watch: bool,
    },
    /// End the current pause (canary) or switch traffic (blue-green).
    Promote {
        name: String,
        /// Skip every remaining step.
        #[arg(long)]
        full: bool,
    },
    /// Go back to the stable revision.
    Abort { name: String },
    /// Start an aborted rollout again.
    Retry { name: String },
    /// Hold the rollout where it is.
    Pause { name: String },
    /// Continue a paused rollout.
    Resume { name: String },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::try_default().await.context("no usable kubeconfig")?;
    let namespace = cli.namespace.unwrap_or_else(|| client.default_namespace().to_owned());
    let api: Api<CourseService> = Api::namespaced(client, &namespace);
    let (name, action) = match cli.command {
        Command::Status { name, watch } => return status(&api, &name, watch).await,
        Command::Promote { name, full } => (name, if full { UserAction::PromoteFull } else { UserAction::Promote }),
        Command::Abort { name } => (name, UserAction::Abort),
        Command::Retry { name } => (name, UserAction::Retry),
        Command::Pause { name } => (name, UserAction::Pause),
        Command::Resume { name } => (name, UserAction::Resume),
    };
    let cs = get(&api, &name, &namespace).await?;
    plugin::check(&cs, action)?;
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let patch =
        serde_json::json!({"metadata": {"annotations": {ROLLOUT_ACTION: plugin::annotation_value(action, nonce)}}});
    api.patch(&name, &PatchParams::apply("kubectl-course"), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("patching courseservice {namespace}/{name}"))?;
    println!("courseservice {namespace}/{name}: {} requested", action.as_str());
    Ok(())
}

async fn get(api: &Api<CourseService>, name: &str, namespace: &str) -> anyhow::Result<CourseService> {
    api.get_opt(name)
        .await
        .with_context(|| format!("reading courseservice {namespace}/{name}"))?
        .with_context(|| format!("courseservice {namespace}/{name} not found"))
}

async fn status(api: &Api<CourseService>, name: &str, watch: bool) -> anyhow::Result<()> {
    let namespace = api.resource_url().split('/').nth(4).unwrap_or_default().to_owned();
    let cs = get(api, name, &namespace).await?;
    print!("{}", plugin::render_status(&cs));
    if !watch {
        return Ok(());
    }
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut changes = watcher(api.clone(), config).applied_objects().boxed();
    while let Some(change) = changes.next().await {
        let cs = change.context("watching the courseservice")?;
        // Clear the screen and redraw: a live progress view.
        print!("\x1b[2J\x1b[H{}", plugin::render_status(&cs));
    }
    Ok(())
}
