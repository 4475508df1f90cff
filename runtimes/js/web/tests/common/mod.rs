//! A QuickJS context with the Web APIs installed, and a way to run async snippets in it.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use rquickjs::{CatchResultExt, Context, Ctx, Promise, Runtime, Value};

pub struct Js {
    rt: Runtime,
    ctx: Context,
}

impl Js {
    pub fn new() -> Js {
        let rt = Runtime::new().unwrap();
        let ctx = Context::full(&rt).unwrap();
        ctx.with(|ctx| {
            tenantry_js_web::install(&ctx)
                .catch(&ctx)
                .unwrap_or_else(|e| panic!("install: {e}"));
        });
        Js { rt, ctx }
    }

    /// Evaluates a global script.
    pub fn eval_script(&self, source: &str) {
        self.ctx.with(|ctx| {
            ctx.eval::<(), _>(source)
                .catch(&ctx)
                .unwrap_or_else(|e| panic!("eval: {e}"));
        });
    }

    /// Evaluates `expr` (an expression, maybe a promise), runs jobs until it settles and
    /// returns `describe(result)` or `"throws <Name>"`, as tests/cases.js does.
    pub fn run(&self, expr: &str) -> String {
        let source = format!(
            "(async () => {{ try {{ return describe(await ({expr})); }} \
             catch (e) {{ return 'throws ' + errorName(e); }} }})()"
        );
        self.settle(&source)
    }

    /// Evaluates `source`, which gives a promise of a string, and returns the string.
    pub fn settle(&self, source: &str) -> String {
        self.ctx.with(|ctx| {
            let promise: Promise = ctx
                .eval(source)
                .catch(&ctx)
                .unwrap_or_else(|e| panic!("eval: {e}"));
            ctx.globals().set("__settled", promise).unwrap();
        });
        while self.rt.is_job_pending() {
            self.rt.execute_pending_job().unwrap();
        }
        self.ctx.with(|ctx| {
            let promise: Promise = ctx.globals().get("__settled").unwrap();
            let value: Value = promise
                .result()
                .expect("promise did not settle")
                .catch(&ctx)
                .unwrap_or_else(|e| panic!("rejected: {e}"));
            value.as_string().expect("a string").to_string().unwrap()
        })
    }

    pub fn with<R>(&self, f: impl FnOnce(Ctx<'_>) -> R) -> R {
        self.ctx.with(f)
    }
}

/// A context with tests/cases.js loaded (for `describe` and `errorName`).
pub fn js_with_cases() -> Js {
    let js = Js::new();
    js.eval_script(include_str!("../cases.js"));
    js
}
