//! Feeds `parse_job` generated hostile bodies (a million by default) and reports what became
//! of them; any panic, or any outcome that fails the checks of `fuzzgen::check`, is saved and
//! makes the run fail.
//!
//! ```text
//! cargo run --release --example fuzz_job -- --inputs 1000000 --seed 1
//! ```
//!
//! The generator lives with the parser's tests, which run a fixed sample of it in CI; this is
//! the long run, by hand, on the stable toolchain.

#[path = "../src/job/validate/tests/fuzzgen.rs"]
mod fuzzgen;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{self, catch_unwind};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use executor_harness::job::{parse_job, ValidationPolicy};

use fuzzgen::{Generator, Mutation, Outcome, REFUSAL_CLASSES};

#[derive(Parser)]
#[command(about = "Fuzz the job parser with generated hostile bodies")]
struct Args {
    /// How many inputs to run.
    #[arg(long, default_value_t = 1_000_000)]
    inputs: u64,
    /// The generator's seed; a seed and an index name one input.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The first input index (to rerun a saved failure: `--start I --inputs 1`).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// The body limit, as `amqp.max_message_bytes` defaults it.
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Where failing inputs are written.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/target/fuzz_job"))]
    save_dir: PathBuf,
}

thread_local! {
    /// The last panic's text, kept by the hook instead of printed, to be reported with its input.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

#[derive(Default)]
struct Tally {
    accepted: u64,
    refused: BTreeMap<&'static str, u64>,
    missing_fields: BTreeMap<String, u64>,
    /// Per mutation: inputs it was applied to, and how many of those were accepted.
    by_mutation: BTreeMap<&'static str, (u64, u64)>,
    panics: u64,
    check_failures: u64,
    bytes: u64,
    largest: usize,
    parse_time: Duration,
    slowest: (Duration, u64, usize),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let fixtures = match fuzzgen::load_valid_fixtures(&fuzzgen::fixtures_dir()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cannot read the job fixtures: {e}");
            return ExitCode::FAILURE;
        }
    };
    let generator = match Generator::new(&fixtures, args.seed) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let policy = ValidationPolicy::with_hosts(Vec::<String>::new(), args.max_body_bytes);
    panic::set_hook(Box::new(|info| {
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string()));
    }));

    println!(
        "fuzz_job: seed {}, inputs {}..{}, {} fixtures, body limit {} bytes",
        args.seed,
        args.start,
        args.start + args.inputs,
        fixtures.len(),
        args.max_body_bytes
    );
    let mut t = Tally::default();
    let started = Instant::now();
    for index in args.start..args.start + args.inputs {
        let input = generator.input(index);
        t.bytes += input.body.len() as u64;
        t.largest = t.largest.max(input.body.len());

        let parse_started = Instant::now();
        let outcome = catch_unwind(|| parse_job(&input.body, &policy));
        let took = parse_started.elapsed();
        t.parse_time += took;
        if took > t.slowest.0 {
            t.slowest = (took, index, input.body.len());
        }

        let failure = match &outcome {
            Err(_) => {
                t.panics += 1;
                let text = LAST_PANIC
                    .with(|p| p.borrow_mut().take())
                    .unwrap_or_default();
                Some(format!("panic: {text}"))
            }
            Ok(result) => {
                let debug;
                let reduced = match result {
                    Ok(job) => {
                        debug = format!("{job:?}");
                        Outcome::Accepted {
                            job_id: &job.job_id,
                            debug: &debug,
                        }
                    }
                    Err(e) => Outcome::Refused {
                        job_id: e.job_id.as_deref(),
                        message: &e.message,
                    },
                };
                match fuzzgen::check(&input.body, &reduced) {
                    Ok(class) => {
                        tally(
                            &mut t,
                            &input,
                            class,
                            result.as_ref().err().map(|e| &e.message),
                        );
                        None
                    }
                    Err(e) => {
                        t.check_failures += 1;
                        Some(format!("check failed: {e}"))
                    }
                }
            }
        };
        if let Some(why) = failure {
            save(&args, index, &input.body, &why);
        }
        let done = index - args.start + 1;
        if done % 100_000 == 0 {
            eprintln!("  {done} inputs, {:.1} s", started.elapsed().as_secs_f64());
        }
    }
    let elapsed = started.elapsed();
    let _ = panic::take_hook();
    report(&args, &t, elapsed);
    if t.panics == 0 && t.check_failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn tally(
    t: &mut Tally,
    input: &fuzzgen::Generated,
    class: Option<&'static str>,
    message: Option<&String>,
) {
    match class {
        None => t.accepted += 1,
        Some(class) => {
            *t.refused.entry(class).or_default() += 1;
            if class == "missing-field" {
                let field = message
                    .and_then(|m| m.split('\'').nth(1))
                    .unwrap_or("?")
                    .to_string();
                *t.missing_fields.entry(field).or_default() += 1;
            }
        }
    }
    for m in Mutation::ALL.into_iter().filter(|&m| input.has(m)) {
        let entry = t.by_mutation.entry(m.name()).or_default();
        entry.0 += 1;
        entry.1 += u64::from(class.is_none());
    }
}

fn save(args: &Args, index: u64, body: &[u8], why: &str) {
    let path = args
        .save_dir
        .join(format!("seed{}-input{index}.bin", args.seed));
    let saved = std::fs::create_dir_all(&args.save_dir).and_then(|()| std::fs::write(&path, body));
    match saved {
        Ok(()) => eprintln!(
            "input {index}: {why}; saved to {} (rerun: --seed {} --start {index} --inputs 1)",
            path.display(),
            args.seed
        ),
        Err(e) => eprintln!("input {index}: {why}; not saved: {e}"),
    }
}

fn report(args: &Args, t: &Tally, elapsed: Duration) {
    let n = args.inputs.max(1) as f64;
    let pct = |k: u64| 100.0 * k as f64 / n;
    let refused: u64 = t.refused.values().sum();
    println!(
        "inputs run        {}\nelapsed           {:.1} s ({:.1} s in parse_job)\ninputs/s          {:.0}",
        args.inputs,
        elapsed.as_secs_f64(),
        t.parse_time.as_secs_f64(),
        n / elapsed.as_secs_f64()
    );
    println!(
        "bytes parsed      {:.1} MiB, largest body {:.2} MiB",
        t.bytes as f64 / (1 << 20) as f64,
        t.largest as f64 / (1 << 20) as f64
    );
    println!(
        "slowest input     {:.1} ms (input {}, {} bytes)",
        t.slowest.0.as_secs_f64() * 1e3,
        t.slowest.1,
        t.slowest.2
    );
    println!(
        "accepted          {} ({:.1} %)",
        t.accepted,
        pct(t.accepted)
    );
    println!("refused           {refused} ({:.1} %)", pct(refused));
    for class in REFUSAL_CLASSES {
        let k = t.refused.get(class).copied().unwrap_or(0);
        println!("  {class:<18}{k:>8} ({:.2} %)", pct(k));
    }
    let mut fields: Vec<_> = t.missing_fields.iter().collect();
    fields.sort_by(|a, b| b.1.cmp(a.1));
    let fields: Vec<String> = fields.iter().map(|(f, k)| format!("{f} {k}")).collect();
    println!("  missing-field by field: {}", fields.join(", "));
    println!("by mutation       inputs with it / of them accepted");
    for m in Mutation::ALL {
        let (with, ok) = t.by_mutation.get(m.name()).copied().unwrap_or((0, 0));
        println!("  {:<18}{with:>8} / {ok}", m.name());
    }
    println!("panics            {}", t.panics);
    println!("check failures    {}", t.check_failures);
}
