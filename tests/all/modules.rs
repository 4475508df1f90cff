//! Loaded modules are bounded: touching many more distinct Workers than the node keeps loaded
//! answers every one of them, while the mappings of `.cwasm` files stay within the configured
//! bound (issue 9: without eviction ~19.8k Workers exhausted `vm.max_map_count`).

use std::path::Path;
use std::thread;

use tenantry_loader::{MODULE_LOADER_THREADS, MappingBudget, VMAS_PER_MODULE};

use crate::common::*;

/// Distinct Workers requested, far more than the node keeps loaded.
const WORKERS: usize = 300;
/// `[engine] max_loaded_modules` and `workers_per_core` of the test node.
const MAX_LOADED_MODULES: usize = 8;
const WORKERS_PER_CORE: usize = 4;
/// `[server] threads` and `[engine] max_instances` set by `common::config_text`.
const CORES: usize = 2;
const MAX_INSTANCES: usize = 64;
/// Client threads, each with one request in flight at a time.
const CLIENTS: usize = 3;

/// A Worker answering `worker <i>`, distinct from every other by that constant.
fn wat(i: usize) -> String {
    let body = format!("worker {i}");
    format!(
        r#"(module
             (import "tenantry:worker/v1" "response_body_write"
               (func $write (param i32 i32 i32) (result i32)))
             (memory (export "memory") 1)
             (data (i32.const 0) "{body}")
             (func (export "tenantry_fetch") (result i32)
               (drop (call $write (i32.const 0) (i32.const 0) (i32.const {})))
               (i32.const 0)))"#,
        body.len()
    )
}

/// Mappings of `.cwasm` files under `dir` in this process (the test node runs in it).
fn cwasm_mappings(dir: &Path) -> usize {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/maps")
        .expect("reading /proc/self/maps")
        .lines()
        .filter(|l| l.contains(&dir) && l.ends_with(".cwasm"))
        .count()
}

#[test]
fn many_distinct_workers_all_answer_within_the_mapping_bound() {
    let modules = tempfile::tempdir().unwrap();
    let mut config = format!(
        "max_loaded_modules = {MAX_LOADED_MODULES}\nworkers_per_core = {WORKERS_PER_CORE}\n\
         [[namespace]]\nname = \"many\"\n\
         [[route]]\nhost = \"*.example.test\"\nnamespace = \"many\"\nscript_from = \"host_label\"\n"
    );
    for i in 0..WORKERS {
        let path = modules.path().join(format!("w{i}.wat"));
        std::fs::write(&path, wat(i)).unwrap();
        config.push_str(&format!(
            "[[worker]]\nnamespace = \"many\"\nname = \"w{i}\"\nmodule = \"{}\"\n",
            path.display()
        ));
    }
    let node = TestNode::start(&config);
    let data = node.dir.path().to_path_buf();

    // Modules alive at once: the process-wide cache, one just mapped per loader thread, each
    // core's Workers, and one in flight per client on a Worker its core may have evicted
    // meanwhile (docs/design.md). Warm pool slots map a copy-on-write image of a live module's
    // `.cwasm`: at most one per slot.
    let modules_alive =
        MAX_LOADED_MODULES + MODULE_LOADER_THREADS + CORES * WORKERS_PER_CORE + CLIENTS;
    let bound = modules_alive * VMAS_PER_MODULE as usize + MAX_INSTANCES;
    assert!(
        bound < WORKERS,
        "the test must touch more Workers than it can keep"
    );

    let most = thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (addr, data) = (node.addr, &data);
                s.spawn(move || {
                    let mut most = 0;
                    // Twice round: the second pass reloads Workers evicted in the first.
                    for i in (0..2 * WORKERS).filter(|i| i % CLIENTS == c) {
                        let i = i % WORKERS;
                        let resp = get(addr, &format!("w{i}.example.test"), "/");
                        assert_eq!(resp.status, 200, "w{i}: {}", resp.text());
                        assert_eq!(resp.text(), format!("worker {i}"));
                        most = most.max(cwasm_mappings(data));
                    }
                    most
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).max()
    });
    let most = most.unwrap_or(0);
    assert!(most > 0, "no .cwasm mapping seen under {}", data.display());
    assert!(
        most <= bound,
        "{most} mappings of .cwasm files, more than the bound of {bound}"
    );
}

#[test]
fn a_cache_too_large_for_the_kernel_mapping_limit_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantry.toml");
    let text = config_text("max_loaded_modules = 100000000\n", "auto");
    let config = tenantry::config::Config::parse(&text, &path).unwrap();
    let e = format!("{:#}", tenantry::serve::Node::start(&config).err().unwrap());
    assert!(
        e.contains("max_loaded_modules = 100000000") && e.contains("vm.max_map_count"),
        "{e}"
    );
}

#[test]
fn an_unconfigured_module_cache_is_sized_from_the_kernel_limit_and_a_configured_one_kept() {
    let node = TestNode::start("");
    let plane = node.node.as_ref().unwrap().plane();
    let settings = plane.engine().settings();
    let expected = MappingBudget::auto_loaded_modules(
        settings,
        CORES,
        tenantry::config::DEFAULT_WORKERS_PER_CORE,
        MappingBudget::kernel_max_map_count(),
    );
    assert_eq!(settings.max_loaded_modules, expected);
    // Far more than the library default at the kernel's default limit with these settings.
    assert!(expected > 2048, "{expected}");
    // It fits the limit with every core's pool whole.
    let (_, workers) = MappingBudget::check(
        settings,
        CORES,
        tenantry::config::DEFAULT_WORKERS_PER_CORE,
        MappingBudget::kernel_max_map_count(),
    )
    .unwrap();
    assert_eq!(workers, tenantry::config::DEFAULT_WORKERS_PER_CORE);
    drop(node);

    let node = TestNode::start("max_loaded_modules = 300\n");
    let plane = node.node.as_ref().unwrap().plane();
    assert_eq!(plane.engine().settings().max_loaded_modules, 300);
}
