;; The fair-share benchmark's hostile Worker (benches/fairshare.sh): burns ~5 ms of CPU in a
;; counted loop, then answers 200 with an empty body. Every iteration is observable to the fuel
;; and epoch checks, so Cranelift cannot remove the loop.
(module
  (memory (export "memory") 1)
  (func (export "tenantry_fetch") (result i32)
    (local $i i32)
    (local.set $i (i32.const 5000000))
    (block $done
      (loop $spin
        (br_if $done (i32.eqz (local.get $i)))
        (local.set $i (i32.sub (local.get $i) (i32.const 1)))
        (br $spin)))
    (i32.const 0)))
