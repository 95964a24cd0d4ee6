//! `rawstor`: create, inspect and exercise rawstor objects.

mod bench;
mod codec_bench;
mod transfer;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rawstor::mdt::Layout;
use rawstor::size::{format_size, parse_size};
use rawstor::uri::Endpoint;
use rawstor::{CreateSpec, Instance, Location, Options, Target, Uuid};

const AFTER_HELP: &str = "\
LOCATION: file:///abs/dir, ost://host:port or mdt://host:port; a comma
list mirrors (ost://a:7777,ost://b:7777). RAWSTOR_LOCATION is the default.
SIZE: bytes or K/M/G/T. Bad input exits 2; a failure exits with a
sysexits code (66 not found, 69 unreachable, 71 other, 77 permission).";

/// Create, inspect and exercise rawstor objects.
#[derive(Parser)]
#[command(
    name = "rawstor",
    version = rawstor::VERSION,
    disable_version_flag = true,
    after_help = AFTER_HELP
)]
struct Cli {
    /// Print the version
    #[arg(short = 'v', long, action = clap::ArgAction::Version)]
    version: (),
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an object, print its target
    Create {
        /// Where (default: RAWSTOR_LOCATION)
        #[arg(env = "RAWSTOR_LOCATION", value_parser = location)]
        location: Location,
        /// Size
        #[arg(short, long, value_parser = size)]
        size: u64,
        /// The object's UUID (default: a new one)
        #[arg(short, long, value_parser = uuid)]
        uuid: Option<Uuid>,
        /// Chunk size
        #[arg(long, value_parser = size)]
        chunk_size: Option<u64>,
        /// On mdt://: replicas:N or ec:K+M (default replicas:3)
        #[arg(long, value_parser = layout)]
        layout: Option<Layout>,
        /// On mdt://: spread the object over pieces of this size (a whole
        /// number of MiB), each placed on OSTs of its own
        #[arg(long, value_parser = size)]
        piece_size: Option<u64>,
    },
    /// Print the targets at a location
    List {
        #[arg(env = "RAWSTOR_LOCATION", value_parser = location)]
        location: Location,
    },
    /// Print an object's size and layout; on mdt:// also its placement
    /// and health
    #[command(alias = "show")]
    Info {
        #[arg(value_parser = target)]
        target: Target,
    },
    /// Print the cluster map: OSTs, state, capacity, the copies each
    /// holds, and what is not where the map now puts it
    Cluster {
        /// mdt://HOST:PORT
        #[arg(env = "RAWSTOR_LOCATION", value_parser = location)]
        location: Location,
    },
    /// Remove an object
    Remove {
        #[arg(value_parser = target)]
        target: Target,
    },
    /// Make the stale copies or shards of a redundant object current
    Repair {
        #[arg(value_parser = target)]
        target: Target,
    },
    /// Read every copy in full (checksums) and compare; report what is
    /// wrong, change nothing
    Scrub {
        /// Rewrite what is found wrong
        #[arg(long)]
        repair: bool,
        #[arg(value_parser = target)]
        target: Target,
    },
    /// Change an object's size
    Resize {
        #[arg(value_parser = target)]
        target: Target,
        #[arg(short, long, value_parser = size)]
        size: u64,
        /// Allow the object to shrink
        #[arg(long)]
        shrink: bool,
    },
    /// Copy a file (or - for stdin) into an object
    Import {
        file: String,
        #[arg(value_parser = target)]
        target: Target,
    },
    /// Copy an object into a file (or - for stdout)
    Export {
        #[arg(value_parser = target)]
        target: Target,
        file: String,
    },
    /// Write, read back and compare
    Testio {
        #[arg(value_parser = target)]
        target: Target,
        #[arg(short, long, default_value = "4K", value_parser = size)]
        block_size: u64,
        #[arg(short = 'd', long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        io_depth: u32,
        #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
    },
    /// Reed-Solomon encode speed: the client's codec next to
    /// reed-solomon-simd on the same buffers
    BenchEc {
        #[arg(long, default_value = "ec:4+2", value_parser = layout)]
        layout: Layout,
    },
    /// Measure IOPS, MB/s and latency percentiles
    Bench(BenchArgs),
}

/// `rawstor bench`.
#[derive(clap::Args)]
struct BenchArgs {
    /// The object (not with --plain)
    #[arg(value_parser = target, required_unless_present = "plain")]
    target: Option<Target>,
    /// randread, randwrite, read or write
    #[arg(long, default_value = "randread", value_parser = pattern)]
    rw: bench::Pattern,
    /// Block size (a multiple of 512)
    #[arg(long, default_value = "4K", value_parser = size)]
    bs: u64,
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    iodepth: u32,
    /// Seconds
    #[arg(long, default_value = "10", value_parser = seconds)]
    runtime: f64,
    /// Bytes from the start to spread the I/O over
    #[arg(long, value_parser = size)]
    span: Option<u64>,
    /// Measure a plain file instead, with the same loop
    #[arg(long)]
    plain: Option<String>,
}

/// A failure: usage (exit 2) or a library error (sysexits, as upstream).
enum Failure {
    Usage(String),
    Runtime(rawstor::Error),
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help, --version.
        Err(err) => {
            let rendered = err.to_string();
            return rawstor::daemon::usage_exit("rawstor", &rendered, !err.use_stderr());
        }
    };
    match run(cli.command) {
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

/// Runs a parsed command.
fn run(command: Command) -> CliResult {
    match command {
        Command::Create {
            location,
            size,
            uuid,
            chunk_size,
            layout,
            piece_size,
        } => create(
            &location,
            CreateSpec {
                size,
                uuid,
                chunk_size,
                layout,
                piece_size,
            },
        ),
        Command::List { location } => list(&location),
        Command::Info { target } => info(&target),
        Command::Cluster { location } => cluster(&location),
        Command::Remove { target } => {
            instance().and_then(|i| i.remove(&target).map_err(Failure::from))
        }
        Command::Repair { target } => repair(&target),
        Command::Scrub { repair, target } => scrub(&target, repair),
        Command::Resize {
            target,
            size,
            shrink,
        } => resize(&target, size, shrink),
        Command::Import { file, target } => transfer::import(&file, &target),
        Command::Export { target, file } => transfer::export(&target, &file),
        Command::Testio {
            target,
            block_size,
            io_depth,
            count,
        } => testio(&target, block_size as usize, io_depth, count),
        Command::BenchEc { layout } => bench_ec(layout),
        Command::Bench(args) => bench_command(args),
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

// ---- argument values (clap value parsers; their errors exit 2) ----

fn location(text: &str) -> Result<Location, String> {
    text.parse()
        .map_err(|e: rawstor::Error| e.context().to_string())
}

fn target(text: &str) -> Result<Target, String> {
    text.parse()
        .map_err(|e: rawstor::Error| e.context().to_string())
}

fn size(text: &str) -> Result<u64, String> {
    parse_size(text).map_err(|e| e.context().to_string())
}

fn uuid(text: &str) -> Result<Uuid, String> {
    rawstor::uuid::parse(text).map_err(|e| e.context().to_string())
}

fn layout(text: &str) -> Result<Layout, String> {
    text.parse()
        .map_err(|e: rawstor::Error| e.context().to_string())
}

fn pattern(text: &str) -> Result<bench::Pattern, String> {
    bench::Pattern::parse(text).ok_or_else(|| "use randread, randwrite, read or write".to_string())
}

fn seconds(text: &str) -> Result<f64, String> {
    text.trim_end_matches('s')
        .parse()
        .ok()
        .filter(|s: &f64| *s > 0.0 && *s <= 86_400.0)
        .ok_or_else(|| "seconds, e.g. 10".to_string())
}

pub(crate) fn instance() -> Result<Instance, Failure> {
    Ok(Instance::new(Options::from_env()?)?)
}

fn create(location: &Location, spec: CreateSpec) -> CliResult {
    if spec.layout.is_some() && !matches!(location.endpoints(), [Endpoint::Mdt(_)]) {
        return Err(Failure::Usage(
            "create: --layout needs an mdt:// location (a comma list of ost:// mirrors)".into(),
        ));
    }
    let target = instance()?.create(location, &spec)?;
    println!("{target}");
    Ok(())
}

fn list(location: &Location) -> CliResult {
    let instance = instance()?;
    let mut after = None;
    loop {
        let page = instance.list(location, after, 0)?;
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

fn bench_ec(layout: Layout) -> CliResult {
    let Layout::Erasure { data, parity } = layout else {
        return Err(Failure::Usage("bench-ec takes an ec:K+M layout".into()));
    };
    codec_bench::run(data, parity)?;
    Ok(())
}

fn info(target: &Target) -> CliResult {
    let instance = instance()?;
    let info = instance.stat(target)?;
    println!("target: {target}");
    println!("size: {}", format_size(info.size));
    println!("size_bytes: {}", info.size);
    println!("chunk_size: {}", format_size(info.chunk_size));
    println!("block_size: {}", info.block_size);
    println!("checksums: crc32 per {} bytes", info.block_size);
    if let [Endpoint::Mdt(_)] = target.location.endpoints() {
        let record = instance.object_record(target)?;
        let map = instance.cluster_map(&target.location)?;
        println!("layout: {}", record.layout);
        if record.piece_size > 0 {
            return print_pieces(&instance, target, &record, &map);
        }
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

/// Where an object over pieces lives: how many pieces, and how many of
/// its copies or shards each OST holds.
fn print_pieces(
    instance: &Instance,
    target: &Target,
    record: &rawstor::mdt::ObjectRecord,
    map: &rawstor::mdt::ClusterMap,
) -> CliResult {
    println!(
        "pieces: {} of {}",
        record.pieces(),
        format_size(record.piece_size)
    );
    let pieces = piece_records(instance, &target.location, record)?;
    let stale: usize = pieces.iter().map(|p| p.stale.len()).sum();
    let mut osts = 0;
    for ost in &map.osts {
        let held: usize = pieces
            .iter()
            .map(|p| p.placement.iter().filter(|c| c.ost == ost.id).count())
            .sum();
        if held > 0 {
            osts += 1;
            println!("ost://{} ({}): {held} copies or shards", ost.addr, ost.id);
        }
    }
    println!(
        "spread over {osts} of {} OSTs; {stale} copies or shards stale",
        map.osts.len()
    );
    Ok(())
}

/// The records of an object's pieces.
fn piece_records(
    instance: &Instance,
    location: &Location,
    record: &rawstor::mdt::ObjectRecord,
) -> Result<Vec<rawstor::mdt::ObjectRecord>, Failure> {
    (0..record.pieces())
        .map(|p| {
            let piece = location.target(rawstor::mdt::piece_uuid(record.uuid, p));
            Ok(instance.object_record(&piece)?)
        })
        .collect()
}

fn cluster(location: &Location) -> CliResult {
    let instance = instance()?;
    let map = instance.cluster_map(location)?;
    let records = records(&instance, location)?;
    println!(
        "map version {}, {} OSTs, {} objects",
        map.version,
        map.osts.len(),
        records.len()
    );
    for ost in &map.osts {
        let copies: usize = records
            .iter()
            .map(|r| r.placement.iter().filter(|p| p.ost == ost.id).count())
            .sum();
        println!(
            "ost://{} {} domain={} {} capacity={} used={} copies={copies}",
            ost.addr,
            ost.id,
            ost.domain,
            if ost.up { "up" } else { "down" },
            format_size(ost.capacity_bytes),
            format_size(ost.used_bytes)
        );
    }
    print_moves(&map, &records);
    Ok(())
}

/// The records of every object at `location`.
fn records(
    instance: &Instance,
    location: &Location,
) -> Result<Vec<rawstor::mdt::ObjectRecord>, Failure> {
    let mut records = Vec::new();
    let mut after = None;
    loop {
        let page = instance.list(location, after, 0)?;
        for info in &page {
            let record = instance.object_record(&location.target(info.uuid))?;
            if record.piece_size > 0 {
                records.extend(piece_records(instance, location, &record)?);
            } else {
                records.push(record);
            }
        }
        match page.last() {
            Some(last) if page.len() == instance.options().list_limit as usize => {
                after = Some(last.uuid)
            }
            _ => return Ok(records),
        }
    }
}

/// What would move for every object to sit where the map puts new ones.
fn print_moves(map: &rawstor::mdt::ClusterMap, records: &[rawstor::mdt::ObjectRecord]) {
    let mut moves = Vec::new();
    for record in records {
        match rawstor::mdt::moves(map, record) {
            Ok(some) => moves.extend(some),
            Err(err) => {
                println!(
                    "placement: cannot tell where {} belongs: {err}",
                    record.uuid
                );
                return;
            }
        }
    }
    if moves.is_empty() {
        println!("placement: every copy and shard is where the map puts it");
        return;
    }
    let mut objects: Vec<Uuid> = moves.iter().map(|m| m.object).collect();
    objects.dedup();
    println!(
        "placement: {} copies or shards of {} objects ({}) are not where the map puts them now; they stay until a rebalance, which rawstor does not do yet",
        moves.len(),
        objects.len(),
        format_size(moves.iter().map(|m| m.bytes).sum())
    );
}

fn repair(target: &Target) -> CliResult {
    let instance = instance()?;
    // What one repaired copy holds: the object, or one of its pieces.
    let size = match target.location.endpoints() {
        [Endpoint::Mdt(_)] => {
            let record = instance.object_record(target)?;
            match record.piece_size {
                0 => record.size,
                piece => piece.min(record.size),
            }
        }
        _ => instance.stat(target)?.size,
    };
    let mut bar: Option<transfer::Progress> = None;
    let repaired = instance.repair(target, &mut |done, total| {
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

fn scrub(target: &Target, repair: bool) -> CliResult {
    let mut bar: Option<transfer::Progress> = None;
    let report = instance()?.scrub(target, repair, &mut |done, total| {
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

fn resize(target: &Target, size: u64, shrink: bool) -> CliResult {
    let object = instance()?.open(target)?;
    object.resize(size, shrink).map_err(|e| {
        if e.errno() == libc::EINVAL && !shrink && size < object.size() {
            Failure::Usage(format!("resize: {} (add --shrink)", e.context()))
        } else {
            Failure::Runtime(e)
        }
    })?;
    object.close()?;
    Ok(())
}

fn testio(target: &Target, block_size: usize, iodepth: u32, count: u64) -> CliResult {
    if block_size == 0 {
        return Err(Failure::Usage(
            "testio: --block-size must be positive".into(),
        ));
    }
    let instance = instance()?;
    let object = instance.open(target)?;
    if (block_size as u64) > object.size() {
        return Err(Failure::Usage(format!(
            "testio: block size {block_size} is larger than the object"
        )));
    }
    let queue = instance.queue(iodepth)?;
    let mismatches = bench::testio(
        &object,
        &queue,
        block_size,
        iodepth as usize,
        count as usize,
    )?;
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

fn bench_command(args: BenchArgs) -> CliResult {
    let pattern = args.rw;
    let block_size = args.bs as usize;
    let iodepth = args.iodepth as usize;
    if block_size == 0 || block_size % 512 != 0 {
        return Err(Failure::Usage(
            "bench: --bs must be a positive multiple of 512".into(),
        ));
    }
    let mut spec = bench::BenchSpec {
        pattern,
        block_size,
        iodepth,
        runtime: Duration::from_secs_f64(args.runtime),
        span: args.span.unwrap_or(u64::MAX),
    };
    if let Some(path) = &args.plain {
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
    let target = args.target.expect("clap requires a target without --plain");
    let instance = instance()?;
    let object = instance.open(&target)?;
    spec.span = spec.span.min(object.size());
    if (block_size as u64) > spec.span {
        return Err(Failure::Usage(
            "bench: --bs is larger than the object".into(),
        ));
    }
    let queue = instance.queue(args.iodepth)?;
    let mut report = bench::run_queue(&object, &queue, &spec)?;
    object.close()?;
    report.print("rawstor", &spec);
    Ok(())
}
