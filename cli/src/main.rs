//! `rawstor`: create, inspect and exercise rawstor objects.

mod args;
mod bench;
mod codec_bench;
mod transfer;

use std::process::ExitCode;
use std::time::Duration;

use args::{Args, Opt, UsageError, flag, value};
use rawstor::mdt::Layout;
use rawstor::size::{format_size, parse_size};
use rawstor::uri::Endpoint;
use rawstor::{CreateSpec, Instance, Location, Options, Target};

const USAGE: &str = "\
usage: rawstor <command> [options]

commands:
  create LOCATION --size SIZE [--uuid UUID] [--chunk-size SIZE] [--layout L]
                             create an object, print its target; on mdt://
                             --layout replicas:N or ec:K+M (default
                             replicas:3)
  list [LOCATION]            print the targets at a location
  info TARGET                print an object's size and layout (alias: show);
                             on mdt:// also its placement and health
  cluster mdt://HOST:PORT    print the cluster map: OSTs, state, capacity
  remove TARGET              remove an object
  repair TARGET              resync the stale copies of a mirrored target
  scrub [--repair] TARGET    read every copy in full (checksums) and compare;
                             --repair rewrites what is found wrong
                             them; report what is wrong, change nothing
  resize TARGET --size SIZE [--shrink]
  import FILE TARGET         copy a file (or - for stdin) into an object
  export TARGET FILE         copy an object into a file (or - for stdout)
  testio TARGET --block-size 4K --io-depth N --count N
                             write, read back and compare
  bench-ec [--layout ec:K+M]  Reed-Solomon encode speed: the client's codec
                             next to reed-solomon-simd on the same buffers
  bench TARGET --rw randread|randwrite|read|write --bs 4K --iodepth N --runtime S
        [--span SIZE] [--plain FILE]
                             measure IOPS, MB/s and latency percentiles

LOCATION: file:///abs/dir, ost://host:port or mdt://host:port; a comma
list mirrors (ost://a:7777,ost://b:7777). RAWSTOR_LOCATION is the default.
SIZE: bytes or K/M/G/T. Bad input exits 2.";

/// A failure: usage (exit 2) or a library error (sysexits, as upstream).
enum Failure {
    Usage(String),
    Runtime(rawstor::Error),
}

impl From<UsageError> for Failure {
    fn from(err: UsageError) -> Self {
        Failure::Usage(err.0)
    }
}

impl From<rawstor::Error> for Failure {
    fn from(err: rawstor::Error) -> Self {
        Failure::Runtime(err)
    }
}

type CliResult = Result<(), Failure>;

fn main() -> ExitCode {
    // Like other Unix tools, end quietly when stdout's reader goes away
    // (`rawstor list | head -1`) instead of failing to print.
    // SAFETY: restoring the default disposition of SIGPIPE before any
    // thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = raw.first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &raw[1..];
    let result = match command.as_str() {
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        "-v" | "--version" => {
            println!("rawstor {}", rawstor::VERSION);
            Ok(())
        }
        "create" => create(rest),
        "list" => list(rest),
        "info" | "show" => info(rest),
        "cluster" => cluster(rest),
        "remove" => remove(rest),
        "repair" => repair(rest),
        "scrub" => scrub(rest),
        "resize" => resize(rest),
        "import" => transfer::import(rest),
        "export" => transfer::export(rest),
        "testio" => testio(rest),
        "bench" => bench_command(rest),
        "bench-ec" => bench_ec(rest),
        other => Err(Failure::Usage(format!(
            "unknown command '{other}' (see rawstor --help)"
        ))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("rawstor: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(err)) => {
            eprintln!("rawstor: {err}");
            ExitCode::from(exit_code(&err))
        }
    }
}

/// Upstream's mapping of errnos to sysexits codes; bad input is 2.
fn exit_code(err: &rawstor::Error) -> u8 {
    match err.errno() {
        libc::EINVAL | libc::ENXIO => 2,
        libc::ENOENT => 66,
        libc::ECONNREFUSED | libc::ETIMEDOUT | libc::EHOSTUNREACH | libc::ENETUNREACH => 69,
        libc::EACCES | libc::EPERM => 77,
        _ => 71,
    }
}

fn parse_args(command: &str, rest: &[String], opts: &[Opt]) -> Result<Args, Failure> {
    Ok(Args::parse(command, rest, opts)?)
}

/// Parses an address argument; its errors are bad input (exit 2).
fn parse_addr<T: std::str::FromStr<Err = rawstor::Error>>(text: &str) -> Result<T, Failure> {
    text.parse()
        .map_err(|e: rawstor::Error| Failure::Usage(e.to_string()))
}

fn parse_size_opt(args: &Args, name: &str) -> Result<Option<u64>, Failure> {
    args.get(name)
        .map(|text| {
            parse_size(text).map_err(|e| Failure::Usage(format!("--{name}: {}", e.context())))
        })
        .transpose()
}

fn parse_count(args: &Args, name: &str, default: usize) -> Result<usize, Failure> {
    match args.get(name) {
        None => Ok(default),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(Failure::Usage(format!(
                "--{name}: expected a positive number, got '{text}'"
            ))),
        },
    }
}

pub(crate) fn instance() -> Result<Instance, Failure> {
    Ok(Instance::new(Options::from_env()?)?)
}

fn location_arg(args: &Args, command: &str) -> Result<Location, Failure> {
    match args.positional.first() {
        Some(text) => parse_addr(text),
        None => match std::env::var("RAWSTOR_LOCATION") {
            Ok(text) => parse_addr(&text),
            Err(_) => Err(Failure::Usage(format!(
                "{command}: missing LOCATION (or set RAWSTOR_LOCATION)"
            ))),
        },
    }
}

fn target_arg(args: &Args, index: usize, command: &str) -> Result<Target, Failure> {
    parse_addr(args.positional(index, command, "TARGET")?)
}

fn create(rest: &[String]) -> CliResult {
    let opts = [
        value("size", Some('s')),
        value("uuid", Some('u')),
        value("chunk-size", None),
        value("layout", None),
    ];
    let args = parse_args("create", rest, &opts)?;
    args.at_most(1, "create")?;
    let location = location_arg(&args, "create")?;
    let size = parse_size_opt(&args, "size")?
        .ok_or_else(|| Failure::Usage("create: missing --size".into()))?;
    let uuid = args
        .get("uuid")
        .map(|text| rawstor::uuid::parse(text).map_err(|e| Failure::Usage(e.to_string())))
        .transpose()?;
    let chunk_size = parse_size_opt(&args, "chunk-size")?;
    let layout = args.get("layout").map(parse_addr).transpose()?;
    if layout.is_some() && !matches!(location.endpoints(), [Endpoint::Mdt(_)]) {
        return Err(Failure::Usage(
            "create: --layout needs an mdt:// location (a comma list of ost:// mirrors)".into(),
        ));
    }
    let target = instance()?.create(
        &location,
        &CreateSpec {
            size,
            uuid,
            chunk_size,
            layout,
        },
    )?;
    println!("{target}");
    Ok(())
}

fn list(rest: &[String]) -> CliResult {
    let args = parse_args("list", rest, &[])?;
    args.at_most(1, "list")?;
    let location = location_arg(&args, "list")?;
    let instance = instance()?;
    let mut after = None;
    loop {
        let page = instance.list(&location, after, 0)?;
        for info in &page {
            println!("{}", location.target(info.uuid));
        }
        match page.last() {
            Some(last) if page.len() == instance.options().list_limit as usize => {
                after = Some(last.uuid)
            }
            _ => return Ok(()),
        }
    }
}

fn bench_ec(rest: &[String]) -> CliResult {
    let args = parse_args("bench-ec", rest, &[value("layout", None)])?;
    args.at_most(0, "bench-ec")?;
    let layout: Layout = args.get("layout").unwrap_or("ec:4+2").parse()?;
    let Layout::Erasure { data, parity } = layout else {
        return Err(Failure::Usage("bench-ec takes an ec:K+M layout".into()));
    };
    codec_bench::run(data, parity)?;
    Ok(())
}

fn info(rest: &[String]) -> CliResult {
    let args = parse_args("info", rest, &[])?;
    args.at_most(1, "info")?;
    let target = target_arg(&args, 0, "info")?;
    let instance = instance()?;
    let info = instance.stat(&target)?;
    println!("target: {target}");
    println!("size: {}", format_size(info.size));
    println!("size_bytes: {}", info.size);
    println!("chunk_size: {}", format_size(info.chunk_size));
    println!("block_size: {}", info.block_size);
    println!("checksums: crc32 per {} bytes", info.block_size);
    if let [Endpoint::Mdt(_)] = target.location.endpoints() {
        let record = instance.object_record(&target)?;
        let map = instance.cluster_map(&target.location)?;
        println!("layout: {}", record.layout);
        for (i, placed) in record.placement.iter().enumerate() {
            let state = match map.osts.iter().find(|o| o.id == placed.ost) {
                Some(ost) if ost.up => "up",
                Some(_) => "down",
                None => "unknown to the map",
            };
            let (role, k) = match record.layout {
                Layout::Replicas(_) => ("copy", i),
                Layout::Erasure { data, .. } if i < data => ("data shard", i),
                Layout::Erasure { data, .. } => ("parity shard", i - data),
            };
            let stale = if record.is_stale(i) { ", stale" } else { "" };
            println!(
                "{role} {k}: ost://{} ({}, {state}{stale})",
                placed.addr, placed.ost
            );
        }
        if !record.dirty.is_empty() {
            println!(
                "write intent: {} regions of {} marked",
                record.dirty.len(),
                format_size(rawstor::mdt::INTENT_REGION_BYTES)
            );
        }
    }
    Ok(())
}

fn cluster(rest: &[String]) -> CliResult {
    let args = parse_args("cluster", rest, &[])?;
    args.at_most(1, "cluster")?;
    let location = location_arg(&args, "cluster")?;
    let map = instance()?.cluster_map(&location)?;
    println!("map version {}, {} OSTs", map.version, map.osts.len());
    for ost in &map.osts {
        println!(
            "ost://{} {} domain={} {} capacity={} used={}",
            ost.addr,
            ost.id,
            ost.domain,
            if ost.up { "up" } else { "down" },
            format_size(ost.capacity_bytes),
            format_size(ost.used_bytes)
        );
    }
    Ok(())
}

fn remove(rest: &[String]) -> CliResult {
    let args = parse_args("remove", rest, &[])?;
    args.at_most(1, "remove")?;
    instance()?.remove(&target_arg(&args, 0, "remove")?)?;
    Ok(())
}

fn repair(rest: &[String]) -> CliResult {
    let args = parse_args("repair", rest, &[])?;
    args.at_most(1, "repair")?;
    let target = target_arg(&args, 0, "repair")?;
    let instance = instance()?;
    let size = instance.stat(&target)?.size;
    let mut bar: Option<transfer::Progress> = None;
    let repaired = instance.repair(&target, &mut |done, total| {
        bar.get_or_insert_with(|| transfer::Progress::new(total))
            .update(done)
    })?;
    if repaired.is_empty() {
        println!("nothing to repair: every copy of {target} is in sync");
    } else {
        println!(
            "repaired {} ({} each) from a good copy",
            repaired.join(", "),
            format_size(size)
        );
    }
    Ok(())
}

fn scrub(rest: &[String]) -> CliResult {
    let args = parse_args("scrub", rest, &[flag("repair", None)])?;
    args.at_most(1, "scrub")?;
    let target = target_arg(&args, 0, "scrub")?;
    let repair = args.has("repair");
    let mut bar: Option<transfer::Progress> = None;
    let report = instance()?.scrub(&target, repair, &mut |done, total| {
        bar.get_or_insert_with(|| transfer::Progress::new(total))
            .update(done)
    })?;
    let what = format!(
        "{} of {} copies ({})",
        format_size(report.bytes_checked),
        report.copies.len(),
        report.copies.join(", ")
    );
    for mended in &report.repaired {
        println!("repaired: {mended}");
    }
    if report.more_repaired > 0 {
        println!("repaired: ... and {} more", report.more_repaired);
    }
    if report.clean() {
        let mended = report.repaired.len() + report.more_repaired;
        if mended > 0 {
            println!("scrubbed {what}: {mended} problem(s) repaired, the copies agree now");
        } else {
            println!("scrubbed {what}: every block verified, the copies agree");
        }
        return Ok(());
    }
    for problem in &report.problems {
        println!("problem: {problem}");
    }
    if report.more_problems > 0 {
        println!("problem: ... and {} more", report.more_problems);
    }
    Err(Failure::Runtime(rawstor::Error::new(
        libc::EIO,
        format!(
            "scrub of {what} found {} problem(s){}",
            report.problems.len() + report.more_problems,
            if repair {
                " it could not repair"
            } else {
                "; rawstor scrub --repair rewrites them"
            }
        ),
    )))
}

fn resize(rest: &[String]) -> CliResult {
    let opts = [value("size", Some('s')), flag("shrink", None)];
    let args = parse_args("resize", rest, &opts)?;
    args.at_most(1, "resize")?;
    let target = target_arg(&args, 0, "resize")?;
    let size = parse_size_opt(&args, "size")?
        .ok_or_else(|| Failure::Usage("resize: missing --size".into()))?;
    let object = instance()?.open(&target)?;
    object.resize(size, args.has("shrink")).map_err(|e| {
        if e.errno() == libc::EINVAL && !args.has("shrink") && size < object.size() {
            Failure::Usage(format!("resize: {} (add --shrink)", e.context()))
        } else {
            Failure::Runtime(e)
        }
    })?;
    object.close()?;
    Ok(())
}

fn testio(rest: &[String]) -> CliResult {
    let opts = [
        value("block-size", Some('b')),
        value("io-depth", Some('d')),
        value("count", Some('c')),
    ];
    let args = parse_args("testio", rest, &opts)?;
    args.at_most(1, "testio")?;
    let target = target_arg(&args, 0, "testio")?;
    let block_size = parse_size_opt(&args, "block-size")?.unwrap_or(4096) as usize;
    let iodepth = parse_count(&args, "io-depth", 1)?;
    let count = parse_count(&args, "count", 1)?;
    if block_size == 0 {
        return Err(Failure::Usage(
            "testio: --block-size must be positive".into(),
        ));
    }
    let instance = instance()?;
    let object = instance.open(&target)?;
    if (block_size as u64) > object.size() {
        return Err(Failure::Usage(format!(
            "testio: block size {block_size} is larger than the object"
        )));
    }
    let queue = instance.queue(iodepth as u32)?;
    let mismatches = bench::testio(&object, &queue, block_size, iodepth, count)?;
    object.close()?;
    if mismatches > 0 {
        return Err(Failure::Runtime(rawstor::Error::new(
            libc::EIO,
            format!("testio: {mismatches} of {count} blocks read back different data"),
        )));
    }
    println!(
        "testio: {count} blocks of {block_size} bytes written and verified, io-depth {iodepth}"
    );
    println!("Success!");
    Ok(())
}

fn bench_command(rest: &[String]) -> CliResult {
    let opts = [
        value("rw", None),
        value("bs", None),
        value("iodepth", None),
        value("runtime", None),
        value("span", None),
        value("plain", None),
    ];
    let args = parse_args("bench", rest, &opts)?;
    args.at_most(1, "bench")?;
    let rw = args.get("rw").unwrap_or("randread");
    let pattern = bench::Pattern::parse(rw).ok_or_else(|| {
        Failure::Usage(format!(
            "bench: --rw '{rw}': use randread, randwrite, read or write"
        ))
    })?;
    let block_size = parse_size_opt(&args, "bs")?.unwrap_or(4096) as usize;
    let iodepth = parse_count(&args, "iodepth", 1)?;
    let runtime_s: f64 = match args.get("runtime") {
        None => 10.0,
        Some(text) => text
            .trim_end_matches('s')
            .parse()
            .ok()
            .filter(|s: &f64| *s > 0.0 && *s <= 86_400.0)
            .ok_or_else(|| {
                Failure::Usage(format!("bench: --runtime '{text}': seconds, e.g. 10"))
            })?,
    };
    if block_size == 0 || block_size % 512 != 0 {
        return Err(Failure::Usage(
            "bench: --bs must be a positive multiple of 512".into(),
        ));
    }
    let mut spec = bench::BenchSpec {
        pattern,
        block_size,
        iodepth,
        runtime: Duration::from_secs_f64(runtime_s),
        span: parse_size_opt(&args, "span")?.unwrap_or(u64::MAX),
    };
    if let Some(path) = args.get("plain") {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(pattern == bench::Pattern::RandWrite || pattern == bench::Pattern::Write)
            .open(path)
            .map_err(|e| rawstor::Error::io(format!("cannot open {path}"), e))?;
        let len = file
            .metadata()
            .map_err(|e| rawstor::Error::io("stat", e))?
            .len();
        spec.span = spec.span.min(len);
        let mut report = bench::run_plain(&file, &spec)
            .map_err(|e| rawstor::Error::io("plain I/O failed", e))?;
        report.print("plain", &spec);
        return Ok(());
    }
    let target = target_arg(&args, 0, "bench")?;
    let instance = instance()?;
    let object = instance.open(&target)?;
    spec.span = spec.span.min(object.size());
    if (block_size as u64) > spec.span {
        return Err(Failure::Usage(
            "bench: --bs is larger than the object".into(),
        ));
    }
    let queue = instance.queue(iodepth as u32)?;
    let mut report = bench::run_queue(&object, &queue, &spec)?;
    object.close()?;
    report.print("rawstor", &spec);
    Ok(())
}
