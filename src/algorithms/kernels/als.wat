;; Implicit ALS: the conjugate-gradient update of a range of rows, as implicit runs it (three CG
;; steps from the previous solution, float32 lanes), the SIMD twin of `alsCgRows` in
;; ../kernels.ts, which stays the double-precision reference.
;;
;; Every pointer is a byte offset into the imported memory (a WasmArena, arena.ts). Vectors are
;; k float32 with k a multiple of 4 (the caller checks), so a vector is k/4 v128 values and
;; its size in bytes is kb = 4k. Vectors the arena hands out are 16-byte aligned.
;;
;; Built by `npm run build:kernels` into als.wasm (this memory import as written) and
;; als.shared.wasm (the import declared `shared`, for worker threads); build.test.ts checks that
;; both committed binaries are what this source assembles to.
(module
  (import "env" "memory" (memory 1))

  ;; Σ a[f]·b[f] over $kb bytes. Vector j accumulates into accumulator j mod 4: four independent
  ;; add chains hide the add latency, and the order (hence the rounding) does not depend on how
  ;; the loop is split. The four lanes of the sum are then added as (l0 + l1) + (l2 + l3).
  (func $dot (param $a i32) (param $b i32) (param $kb i32) (result f32)
    (local $end i32) (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128)
    (local.set $end (i32.add (local.get $a) (local.get $kb)))
    ;; Four vectors at a time while four remain.
    (block $tail
      (loop $group
        (br_if $tail (i32.gt_u (i32.add (local.get $a) (i32.const 64)) (local.get $end)))
        (local.set $acc0 (f32x4.add (local.get $acc0)
          (f32x4.mul (v128.load (local.get $a)) (v128.load (local.get $b)))))
        (local.set $acc1 (f32x4.add (local.get $acc1)
          (f32x4.mul (v128.load offset=16 (local.get $a)) (v128.load offset=16 (local.get $b)))))
        (local.set $acc2 (f32x4.add (local.get $acc2)
          (f32x4.mul (v128.load offset=32 (local.get $a)) (v128.load offset=32 (local.get $b)))))
        (local.set $acc3 (f32x4.add (local.get $acc3)
          (f32x4.mul (v128.load offset=48 (local.get $a)) (v128.load offset=48 (local.get $b)))))
        (local.set $a (i32.add (local.get $a) (i32.const 64)))
        (local.set $b (i32.add (local.get $b) (i32.const 64)))
        (br $group)))
    ;; The last zero to three vectors, into accumulators 0, 1, 2.
    (if (i32.lt_u (local.get $a) (local.get $end))
      (then
        (local.set $acc0 (f32x4.add (local.get $acc0)
          (f32x4.mul (v128.load (local.get $a)) (v128.load (local.get $b)))))
        (if (i32.lt_u (i32.add (local.get $a) (i32.const 16)) (local.get $end))
          (then
            (local.set $acc1 (f32x4.add (local.get $acc1)
              (f32x4.mul (v128.load offset=16 (local.get $a)) (v128.load offset=16 (local.get $b)))))
            (if (i32.lt_u (i32.add (local.get $a) (i32.const 32)) (local.get $end))
              (then
                (local.set $acc2 (f32x4.add (local.get $acc2)
                  (f32x4.mul (v128.load offset=32 (local.get $a)) (v128.load offset=32 (local.get $b)))))))))))
    (local.set $acc0
      (f32x4.add (f32x4.add (f32x4.add (local.get $acc0) (local.get $acc1)) (local.get $acc2))
        (local.get $acc3)))
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $acc0)) (f32x4.extract_lane 1 (local.get $acc0)))
      (f32.add (f32x4.extract_lane 2 (local.get $acc0)) (f32x4.extract_lane 3 (local.get $acc0)))))

  ;; The CG step's update of x and r with α in every lane of $alpha, returning r · r (the new
  ;; residual, accumulated as $dot does it):
  ;;   x += α p;  r −= α Ap
  ;; One pass over the four vectors instead of three calls.
  (func $cgUpdate (param $x i32) (param $r i32) (param $p i32) (param $ap i32) (param $alpha v128)
    (param $kb i32) (result f32)
    (local $end i32) (local $rv v128)
    (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128)
    (local.set $end (i32.add (local.get $x) (local.get $kb)))
    (block $tail
      (loop $group
        (br_if $tail (i32.gt_u (i32.add (local.get $x) (i32.const 64)) (local.get $end)))
        (v128.store (local.get $x)
          (f32x4.add (v128.load (local.get $x)) (f32x4.mul (local.get $alpha) (v128.load (local.get $p)))))
        (local.set $rv
          (f32x4.sub (v128.load (local.get $r)) (f32x4.mul (local.get $alpha) (v128.load (local.get $ap)))))
        (v128.store (local.get $r) (local.get $rv))
        (local.set $acc0 (f32x4.add (local.get $acc0) (f32x4.mul (local.get $rv) (local.get $rv))))
        (v128.store offset=16 (local.get $x)
          (f32x4.add (v128.load offset=16 (local.get $x)) (f32x4.mul (local.get $alpha) (v128.load offset=16 (local.get $p)))))
        (local.set $rv
          (f32x4.sub (v128.load offset=16 (local.get $r)) (f32x4.mul (local.get $alpha) (v128.load offset=16 (local.get $ap)))))
        (v128.store offset=16 (local.get $r) (local.get $rv))
        (local.set $acc1 (f32x4.add (local.get $acc1) (f32x4.mul (local.get $rv) (local.get $rv))))
        (v128.store offset=32 (local.get $x)
          (f32x4.add (v128.load offset=32 (local.get $x)) (f32x4.mul (local.get $alpha) (v128.load offset=32 (local.get $p)))))
        (local.set $rv
          (f32x4.sub (v128.load offset=32 (local.get $r)) (f32x4.mul (local.get $alpha) (v128.load offset=32 (local.get $ap)))))
        (v128.store offset=32 (local.get $r) (local.get $rv))
        (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul (local.get $rv) (local.get $rv))))
        (v128.store offset=48 (local.get $x)
          (f32x4.add (v128.load offset=48 (local.get $x)) (f32x4.mul (local.get $alpha) (v128.load offset=48 (local.get $p)))))
        (local.set $rv
          (f32x4.sub (v128.load offset=48 (local.get $r)) (f32x4.mul (local.get $alpha) (v128.load offset=48 (local.get $ap)))))
        (v128.store offset=48 (local.get $r) (local.get $rv))
        (local.set $acc3 (f32x4.add (local.get $acc3) (f32x4.mul (local.get $rv) (local.get $rv))))
        (local.set $x (i32.add (local.get $x) (i32.const 64)))
        (local.set $r (i32.add (local.get $r) (i32.const 64)))
        (local.set $p (i32.add (local.get $p) (i32.const 64)))
        (local.set $ap (i32.add (local.get $ap) (i32.const 64)))
        (br $group)))
    ;; The last zero to three vectors, into accumulators 0, 1, 2.
    (if (i32.lt_u (local.get $x) (local.get $end))
      (then
        (v128.store (local.get $x)
          (f32x4.add (v128.load (local.get $x)) (f32x4.mul (local.get $alpha) (v128.load (local.get $p)))))
        (local.set $rv
          (f32x4.sub (v128.load (local.get $r)) (f32x4.mul (local.get $alpha) (v128.load (local.get $ap)))))
        (v128.store (local.get $r) (local.get $rv))
        (local.set $acc0 (f32x4.add (local.get $acc0) (f32x4.mul (local.get $rv) (local.get $rv))))
        (if (i32.lt_u (i32.add (local.get $x) (i32.const 16)) (local.get $end))
          (then
            (v128.store offset=16 (local.get $x)
              (f32x4.add (v128.load offset=16 (local.get $x)) (f32x4.mul (local.get $alpha) (v128.load offset=16 (local.get $p)))))
            (local.set $rv
              (f32x4.sub (v128.load offset=16 (local.get $r)) (f32x4.mul (local.get $alpha) (v128.load offset=16 (local.get $ap)))))
            (v128.store offset=16 (local.get $r) (local.get $rv))
            (local.set $acc1 (f32x4.add (local.get $acc1) (f32x4.mul (local.get $rv) (local.get $rv))))
            (if (i32.lt_u (i32.add (local.get $x) (i32.const 32)) (local.get $end))
              (then
                (v128.store offset=32 (local.get $x)
                  (f32x4.add (v128.load offset=32 (local.get $x)) (f32x4.mul (local.get $alpha) (v128.load offset=32 (local.get $p)))))
                (local.set $rv
                  (f32x4.sub (v128.load offset=32 (local.get $r)) (f32x4.mul (local.get $alpha) (v128.load offset=32 (local.get $ap)))))
                (v128.store offset=32 (local.get $r) (local.get $rv))
                (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul (local.get $rv) (local.get $rv))))))))))
    (local.set $acc0
      (f32x4.add (f32x4.add (f32x4.add (local.get $acc0) (local.get $acc1)) (local.get $acc2))
        (local.get $acc3)))
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $acc0)) (f32x4.extract_lane 1 (local.get $acc0)))
      (f32.add (f32x4.extract_lane 2 (local.get $acc0)) (f32x4.extract_lane 3 (local.get $acc0)))))

  ;; dst = src over $kb bytes.
  (func $copy (param $dst i32) (param $src i32) (param $kb i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $dst) (local.get $kb)))
    (loop $vec
      (v128.store (local.get $dst) (v128.load (local.get $src)))
      (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
      (local.set $src (i32.add (local.get $src) (i32.const 16)))
      (br_if $vec (i32.lt_u (local.get $dst) (local.get $end)))))

  ;; dst = src + s·dst over $kb bytes (the CG direction update p ← r + βp).
  (func $xpby (param $dst i32) (param $src i32) (param $s v128) (param $kb i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $dst) (local.get $kb)))
    (loop $vec
      (v128.store (local.get $dst)
        (f32x4.add (v128.load (local.get $src)) (f32x4.mul (local.get $s) (v128.load (local.get $dst)))))
      (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
      (local.set $src (i32.add (local.get $src) (i32.const 16)))
      (br_if $vec (i32.lt_u (local.get $dst) (local.get $end)))))

  ;; out[a] = (G[a,:] · vec) + λ vec[a], the product with G + λI, or with negate = 1
  ;; out[a] = −(G[a,:] · vec) − λ vec[a]. G (k×k float32) is symmetric, so rows serve as columns.
  ;; Four rows at a time, so each load of vec serves four rows; k is a multiple of 4.
  (func $symv (param $G i32) (param $vec i32) (param $out i32) (param $k i32) (param $lambda f32)
    (param $negate i32)
    (local $kb i32) (local $outEnd i32) (local $g0 i32) (local $g1 i32) (local $g2 i32) (local $g3 i32)
    (local $v i32) (local $vEnd i32) (local $va i32)
    (local $vj v128) (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128)
    (local $s f32)
    (local.set $kb (i32.shl (local.get $k) (i32.const 2)))
    (local.set $outEnd (i32.add (local.get $out) (local.get $kb)))
    (local.set $va (local.get $vec))
    (loop $rows
      ;; Rows g, g+kb, g+2kb, g+3kb against vec, vector by vector.
      (local.set $acc0 (v128.const i32x4 0 0 0 0))
      (local.set $acc1 (v128.const i32x4 0 0 0 0))
      (local.set $acc2 (v128.const i32x4 0 0 0 0))
      (local.set $acc3 (v128.const i32x4 0 0 0 0))
      (local.set $g0 (local.get $G))
      (local.set $g1 (i32.add (local.get $g0) (local.get $kb)))
      (local.set $g2 (i32.add (local.get $g1) (local.get $kb)))
      (local.set $g3 (i32.add (local.get $g2) (local.get $kb)))
      (local.set $v (local.get $vec))
      (local.set $vEnd (i32.add (local.get $vec) (local.get $kb)))
      ;; Four vectors per iteration while four remain (constant offsets), then one at a time.
      (block $colsTail
        (loop $cols
          (br_if $colsTail (i32.gt_u (i32.add (local.get $v) (i32.const 64)) (local.get $vEnd)))
          (local.set $vj (v128.load (local.get $v)))
          (local.set $acc0 (f32x4.add (local.get $acc0) (f32x4.mul (v128.load (local.get $g0)) (local.get $vj))))
          (local.set $acc1 (f32x4.add (local.get $acc1) (f32x4.mul (v128.load (local.get $g1)) (local.get $vj))))
          (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul (v128.load (local.get $g2)) (local.get $vj))))
          (local.set $acc3 (f32x4.add (local.get $acc3) (f32x4.mul (v128.load (local.get $g3)) (local.get $vj))))
          (local.set $vj (v128.load offset=16 (local.get $v)))
          (local.set $acc0 (f32x4.add (local.get $acc0) (f32x4.mul (v128.load offset=16 (local.get $g0)) (local.get $vj))))
          (local.set $acc1 (f32x4.add (local.get $acc1) (f32x4.mul (v128.load offset=16 (local.get $g1)) (local.get $vj))))
          (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul (v128.load offset=16 (local.get $g2)) (local.get $vj))))
          (local.set $acc3 (f32x4.add (local.get $acc3) (f32x4.mul (v128.load offset=16 (local.get $g3)) (local.get $vj))))
          (local.set $vj (v128.load offset=32 (local.get $v)))
          (local.set $acc0 (f32x4.add (local.get $acc0) (f32x4.mul (v128.load offset=32 (local.get $g0)) (local.get $vj))))
          (local.set $acc1 (f32x4.add (local.get $acc1) (f32x4.mul (v128.load offset=32 (local.get $g1)) (local.get $vj))))
          (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul (v128.load offset=32 (local.get $g2)) (local.get $vj))))
          (local.set $acc3 (f32x4.add (local.get $acc3) (f32x4.mul (v128.load offset=32 (local.get $g3)) (local.get $vj))))
          (local.set $vj (v128.load offset=48 (local.get $v)))
          (local.set $acc0 (f32x4.add (local.get $acc0) (f32x4.mul (v128.load offset=48 (local.get $g0)) (local.get $vj))))
          (local.set $acc1 (f32x4.add (local.get $acc1) (f32x4.mul (v128.load offset=48 (local.get $g1)) (local.get $vj))))
          (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul (v128.load offset=48 (local.get $g2)) (local.get $vj))))
          (local.set $acc3 (f32x4.add (local.get $acc3) (f32x4.mul (v128.load offset=48 (local.get $g3)) (local.get $vj))))
          (local.set $g0 (i32.add (local.get $g0) (i32.const 64)))
          (local.set $g1 (i32.add (local.get $g1) (i32.const 64)))
          (local.set $g2 (i32.add (local.get $g2) (i32.const 64)))
          (local.set $g3 (i32.add (local.get $g3) (i32.const 64)))
          (local.set $v (i32.add (local.get $v) (i32.const 64)))
          (br $cols)))
      (block $colsDone
        (loop $col
          (br_if $colsDone (i32.ge_u (local.get $v) (local.get $vEnd)))
          (local.set $vj (v128.load (local.get $v)))
          (local.set $acc0 (f32x4.add (local.get $acc0) (f32x4.mul (v128.load (local.get $g0)) (local.get $vj))))
          (local.set $acc1 (f32x4.add (local.get $acc1) (f32x4.mul (v128.load (local.get $g1)) (local.get $vj))))
          (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul (v128.load (local.get $g2)) (local.get $vj))))
          (local.set $acc3 (f32x4.add (local.get $acc3) (f32x4.mul (v128.load (local.get $g3)) (local.get $vj))))
          (local.set $g0 (i32.add (local.get $g0) (i32.const 16)))
          (local.set $g1 (i32.add (local.get $g1) (i32.const 16)))
          (local.set $g2 (i32.add (local.get $g2) (i32.const 16)))
          (local.set $g3 (i32.add (local.get $g3) (i32.const 16)))
          (local.set $v (i32.add (local.get $v) (i32.const 16)))
          (br $col)))
      (local.set $s
        (f32.add (f32.add (f32x4.extract_lane 0 (local.get $acc0)) (f32x4.extract_lane 1 (local.get $acc0)))
          (f32.add (f32x4.extract_lane 2 (local.get $acc0)) (f32x4.extract_lane 3 (local.get $acc0)))))
      (f32.store (local.get $out)
        (select
          (f32.sub (f32.neg (local.get $s)) (f32.mul (local.get $lambda) (f32.load (local.get $va))))
          (f32.add (local.get $s) (f32.mul (local.get $lambda) (f32.load (local.get $va))))
          (local.get $negate)))
      (local.set $s
        (f32.add (f32.add (f32x4.extract_lane 0 (local.get $acc1)) (f32x4.extract_lane 1 (local.get $acc1)))
          (f32.add (f32x4.extract_lane 2 (local.get $acc1)) (f32x4.extract_lane 3 (local.get $acc1)))))
      (f32.store offset=4 (local.get $out)
        (select
          (f32.sub (f32.neg (local.get $s)) (f32.mul (local.get $lambda) (f32.load offset=4 (local.get $va))))
          (f32.add (local.get $s) (f32.mul (local.get $lambda) (f32.load offset=4 (local.get $va))))
          (local.get $negate)))
      (local.set $s
        (f32.add (f32.add (f32x4.extract_lane 0 (local.get $acc2)) (f32x4.extract_lane 1 (local.get $acc2)))
          (f32.add (f32x4.extract_lane 2 (local.get $acc2)) (f32x4.extract_lane 3 (local.get $acc2)))))
      (f32.store offset=8 (local.get $out)
        (select
          (f32.sub (f32.neg (local.get $s)) (f32.mul (local.get $lambda) (f32.load offset=8 (local.get $va))))
          (f32.add (local.get $s) (f32.mul (local.get $lambda) (f32.load offset=8 (local.get $va))))
          (local.get $negate)))
      (local.set $s
        (f32.add (f32.add (f32x4.extract_lane 0 (local.get $acc3)) (f32x4.extract_lane 1 (local.get $acc3)))
          (f32.add (f32x4.extract_lane 2 (local.get $acc3)) (f32x4.extract_lane 3 (local.get $acc3)))))
      (f32.store offset=12 (local.get $out)
        (select
          (f32.sub (f32.neg (local.get $s)) (f32.mul (local.get $lambda) (f32.load offset=12 (local.get $va))))
          (f32.add (local.get $s) (f32.mul (local.get $lambda) (f32.load offset=12 (local.get $va))))
          (local.get $negate)))
      (local.set $G (i32.add (local.get $G) (i32.shl (local.get $kb) (i32.const 2))))
      (local.set $out (i32.add (local.get $out) (i32.const 16)))
      (local.set $va (i32.add (local.get $va) (i32.const 16)))
      (br_if $rows (i32.lt_u (local.get $out) (local.get $outEnd)))))

  ;; The stored entries' part of the CG system for one row: for q in [qs, qe), with
  ;; w = data[q], c1 = alpha·|w| and y the factor row of item indices[q],
  ;;   out += (c1 (y · vec)) y                                  (target = 0: out = A vec)
  ;;   out += ([w > 0](1 + c1) − c1 (y · vec)) y                (target = 1: out = b − A vec)
  ;; This is the hot loop of ALS, so the dot product and the update are written out here rather
  ;; than called: a call would spill every live value of the loop around it.
  (func $addEntries (param $q i32) (param $qe i32) (param $indices i32) (param $data i32)
    (param $Y i32) (param $alpha f32) (param $kb i32) (param $vec i32) (param $out i32)
    (param $target i32)
    (local $w f32) (local $c1 f32) (local $d f32) (local $t f32)
    (local $y i32) (local $v i32) (local $o i32) (local $yEnd i32) (local $tv v128)
    (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128)
    (block $entriesDone
      (loop $entry
        (br_if $entriesDone (i32.ge_s (local.get $q) (local.get $qe)))
        (local.set $w (f32.load (i32.add (local.get $data) (i32.shl (local.get $q) (i32.const 2)))))
        (local.set $c1 (f32.mul (local.get $alpha) (f32.abs (local.get $w))))
        (local.set $y (i32.add (local.get $Y)
          (i32.mul
            (i32.load (i32.add (local.get $indices) (i32.shl (local.get $q) (i32.const 2))))
            (local.get $kb))))
        (local.set $yEnd (i32.add (local.get $y) (local.get $kb)))

        ;; d = y · vec, as $dot computes it (vector j into accumulator j mod 4)
        (local.set $acc0 (v128.const i32x4 0 0 0 0))
        (local.set $acc1 (v128.const i32x4 0 0 0 0))
        (local.set $acc2 (v128.const i32x4 0 0 0 0))
        (local.set $acc3 (v128.const i32x4 0 0 0 0))
        (local.set $o (local.get $y))
        (local.set $v (local.get $vec))
        (block $dotTail
          (loop $dotGroup
            (br_if $dotTail (i32.gt_u (i32.add (local.get $o) (i32.const 64)) (local.get $yEnd)))
            (local.set $acc0 (f32x4.add (local.get $acc0)
              (f32x4.mul (v128.load (local.get $o)) (v128.load (local.get $v)))))
            (local.set $acc1 (f32x4.add (local.get $acc1)
              (f32x4.mul (v128.load offset=16 (local.get $o)) (v128.load offset=16 (local.get $v)))))
            (local.set $acc2 (f32x4.add (local.get $acc2)
              (f32x4.mul (v128.load offset=32 (local.get $o)) (v128.load offset=32 (local.get $v)))))
            (local.set $acc3 (f32x4.add (local.get $acc3)
              (f32x4.mul (v128.load offset=48 (local.get $o)) (v128.load offset=48 (local.get $v)))))
            (local.set $o (i32.add (local.get $o) (i32.const 64)))
            (local.set $v (i32.add (local.get $v) (i32.const 64)))
            (br $dotGroup)))
        (if (i32.lt_u (local.get $o) (local.get $yEnd))
          (then
            (local.set $acc0 (f32x4.add (local.get $acc0)
              (f32x4.mul (v128.load (local.get $o)) (v128.load (local.get $v)))))
            (if (i32.lt_u (i32.add (local.get $o) (i32.const 16)) (local.get $yEnd))
              (then
                (local.set $acc1 (f32x4.add (local.get $acc1)
                  (f32x4.mul (v128.load offset=16 (local.get $o)) (v128.load offset=16 (local.get $v)))))
                (if (i32.lt_u (i32.add (local.get $o) (i32.const 32)) (local.get $yEnd))
                  (then
                    (local.set $acc2 (f32x4.add (local.get $acc2)
                      (f32x4.mul (v128.load offset=32 (local.get $o)) (v128.load offset=32 (local.get $v)))))))))))
        (local.set $acc0
          (f32x4.add (f32x4.add (f32x4.add (local.get $acc0) (local.get $acc1)) (local.get $acc2))
            (local.get $acc3)))
        (local.set $d
          (f32.add
            (f32.add (f32x4.extract_lane 0 (local.get $acc0)) (f32x4.extract_lane 1 (local.get $acc0)))
            (f32.add (f32x4.extract_lane 2 (local.get $acc0)) (f32x4.extract_lane 3 (local.get $acc0)))))

        ;; t, the weight of y
        (local.set $t
          (select
            (f32.sub
              (select (f32.add (f32.const 1) (local.get $c1)) (f32.const 0) (f32.gt (local.get $w) (f32.const 0)))
              (f32.mul (local.get $c1) (local.get $d)))
            (f32.mul (local.get $c1) (local.get $d))
            (local.get $target)))
        (local.set $tv (f32x4.splat (local.get $t)))

        ;; out += t·y, as $axpy does it
        (local.set $o (local.get $out))
        (block $axpyTail
          (loop $axpyGroup
            (br_if $axpyTail (i32.gt_u (i32.add (local.get $y) (i32.const 64)) (local.get $yEnd)))
            (v128.store (local.get $o)
              (f32x4.add (v128.load (local.get $o)) (f32x4.mul (local.get $tv) (v128.load (local.get $y)))))
            (v128.store offset=16 (local.get $o)
              (f32x4.add (v128.load offset=16 (local.get $o))
                (f32x4.mul (local.get $tv) (v128.load offset=16 (local.get $y)))))
            (v128.store offset=32 (local.get $o)
              (f32x4.add (v128.load offset=32 (local.get $o))
                (f32x4.mul (local.get $tv) (v128.load offset=32 (local.get $y)))))
            (v128.store offset=48 (local.get $o)
              (f32x4.add (v128.load offset=48 (local.get $o))
                (f32x4.mul (local.get $tv) (v128.load offset=48 (local.get $y)))))
            (local.set $o (i32.add (local.get $o) (i32.const 64)))
            (local.set $y (i32.add (local.get $y) (i32.const 64)))
            (br $axpyGroup)))
        (block $axpyDone
          (loop $axpyVec
            (br_if $axpyDone (i32.ge_u (local.get $y) (local.get $yEnd)))
            (v128.store (local.get $o)
              (f32x4.add (v128.load (local.get $o)) (f32x4.mul (local.get $tv) (v128.load (local.get $y)))))
            (local.set $o (i32.add (local.get $o) (i32.const 16)))
            (local.set $y (i32.add (local.get $y) (i32.const 16)))
            (br $axpyVec)))

        (local.set $q (i32.add (local.get $q) (i32.const 1)))
        (br $entry))))

  ;; $addEntries for k = 32 (kb = 128), written out: the eight vectors of y are loaded once, into
  ;; locals, for both the dot product and the update, and no loop tests the vector count. The same
  ;; operations in the same order as $addEntries (vector j into accumulator j mod 4), except that an
  ;; accumulator starts from its first product instead of 0 + it: the optimizing compiler cannot
  ;; drop that add (0 + −0 is +0), and the four of them made this body 1.27–1.37× slower than the
  ;; former run-time emitter at k = 32 (0.97–1.03× without). Results can differ from $addEntries
  ;; only in the sign of a zero.
  (func $addEntries32 (param $q i32) (param $qe i32) (param $indices i32) (param $data i32)
    (param $Y i32) (param $alpha f32) (param $vec i32) (param $out i32) (param $target i32)
    (local $w f32) (local $c1 f32) (local $d f32) (local $t f32) (local $y i32) (local $tv v128)
    (local $y0 v128) (local $y1 v128) (local $y2 v128) (local $y3 v128)
    (local $y4 v128) (local $y5 v128) (local $y6 v128) (local $y7 v128)
    (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128)
    (block $entriesDone
      (loop $entry
        (br_if $entriesDone (i32.ge_s (local.get $q) (local.get $qe)))
        (local.set $w (f32.load (i32.add (local.get $data) (i32.shl (local.get $q) (i32.const 2)))))
        (local.set $c1 (f32.mul (local.get $alpha) (f32.abs (local.get $w))))
        (local.set $y (i32.add (local.get $Y)
          (i32.shl
            (i32.load (i32.add (local.get $indices) (i32.shl (local.get $q) (i32.const 2))))
            (i32.const 7))))
        (local.set $y0 (v128.load (local.get $y)))
        (local.set $y1 (v128.load offset=16 (local.get $y)))
        (local.set $y2 (v128.load offset=32 (local.get $y)))
        (local.set $y3 (v128.load offset=48 (local.get $y)))
        (local.set $y4 (v128.load offset=64 (local.get $y)))
        (local.set $y5 (v128.load offset=80 (local.get $y)))
        (local.set $y6 (v128.load offset=96 (local.get $y)))
        (local.set $y7 (v128.load offset=112 (local.get $y)))
        ;; d = y · vec
        (local.set $acc0 (f32x4.mul (local.get $y0) (v128.load (local.get $vec))))
        (local.set $acc1 (f32x4.mul (local.get $y1) (v128.load offset=16 (local.get $vec))))
        (local.set $acc2 (f32x4.mul (local.get $y2) (v128.load offset=32 (local.get $vec))))
        (local.set $acc3 (f32x4.mul (local.get $y3) (v128.load offset=48 (local.get $vec))))
        (local.set $acc0 (f32x4.add (local.get $acc0)
          (f32x4.mul (local.get $y4) (v128.load offset=64 (local.get $vec)))))
        (local.set $acc1 (f32x4.add (local.get $acc1)
          (f32x4.mul (local.get $y5) (v128.load offset=80 (local.get $vec)))))
        (local.set $acc2 (f32x4.add (local.get $acc2)
          (f32x4.mul (local.get $y6) (v128.load offset=96 (local.get $vec)))))
        (local.set $acc3 (f32x4.add (local.get $acc3)
          (f32x4.mul (local.get $y7) (v128.load offset=112 (local.get $vec)))))
        (local.set $acc0
          (f32x4.add (f32x4.add (f32x4.add (local.get $acc0) (local.get $acc1)) (local.get $acc2))
            (local.get $acc3)))
        (local.set $d
          (f32.add
            (f32.add (f32x4.extract_lane 0 (local.get $acc0)) (f32x4.extract_lane 1 (local.get $acc0)))
            (f32.add (f32x4.extract_lane 2 (local.get $acc0)) (f32x4.extract_lane 3 (local.get $acc0)))))
        ;; t, the weight of y
        (local.set $t
          (select
            (f32.sub
              (select (f32.add (f32.const 1) (local.get $c1)) (f32.const 0) (f32.gt (local.get $w) (f32.const 0)))
              (f32.mul (local.get $c1) (local.get $d)))
            (f32.mul (local.get $c1) (local.get $d))
            (local.get $target)))
        (local.set $tv (f32x4.splat (local.get $t)))
        ;; out += t·y
        (v128.store (local.get $out)
          (f32x4.add (v128.load (local.get $out)) (f32x4.mul (local.get $tv) (local.get $y0))))
        (v128.store offset=16 (local.get $out)
          (f32x4.add (v128.load offset=16 (local.get $out)) (f32x4.mul (local.get $tv) (local.get $y1))))
        (v128.store offset=32 (local.get $out)
          (f32x4.add (v128.load offset=32 (local.get $out)) (f32x4.mul (local.get $tv) (local.get $y2))))
        (v128.store offset=48 (local.get $out)
          (f32x4.add (v128.load offset=48 (local.get $out)) (f32x4.mul (local.get $tv) (local.get $y3))))
        (v128.store offset=64 (local.get $out)
          (f32x4.add (v128.load offset=64 (local.get $out)) (f32x4.mul (local.get $tv) (local.get $y4))))
        (v128.store offset=80 (local.get $out)
          (f32x4.add (v128.load offset=80 (local.get $out)) (f32x4.mul (local.get $tv) (local.get $y5))))
        (v128.store offset=96 (local.get $out)
          (f32x4.add (v128.load offset=96 (local.get $out)) (f32x4.mul (local.get $tv) (local.get $y6))))
        (v128.store offset=112 (local.get $out)
          (f32x4.add (v128.load offset=112 (local.get $out)) (f32x4.mul (local.get $tv) (local.get $y7))))
        (local.set $q (i32.add (local.get $q) (i32.const 1)))
        (br $entry))))

  ;; The same for k = 16 (kb = 64): four vectors, one per accumulator.
  (func $addEntries16 (param $q i32) (param $qe i32) (param $indices i32) (param $data i32)
    (param $Y i32) (param $alpha f32) (param $vec i32) (param $out i32) (param $target i32)
    (local $w f32) (local $c1 f32) (local $d f32) (local $t f32) (local $y i32) (local $tv v128)
    (local $y0 v128) (local $y1 v128) (local $y2 v128) (local $y3 v128)
    (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128)
    (block $entriesDone
      (loop $entry
        (br_if $entriesDone (i32.ge_s (local.get $q) (local.get $qe)))
        (local.set $w (f32.load (i32.add (local.get $data) (i32.shl (local.get $q) (i32.const 2)))))
        (local.set $c1 (f32.mul (local.get $alpha) (f32.abs (local.get $w))))
        (local.set $y (i32.add (local.get $Y)
          (i32.shl
            (i32.load (i32.add (local.get $indices) (i32.shl (local.get $q) (i32.const 2))))
            (i32.const 6))))
        (local.set $y0 (v128.load (local.get $y)))
        (local.set $y1 (v128.load offset=16 (local.get $y)))
        (local.set $y2 (v128.load offset=32 (local.get $y)))
        (local.set $y3 (v128.load offset=48 (local.get $y)))
        ;; d = y · vec
        (local.set $acc0 (f32x4.mul (local.get $y0) (v128.load (local.get $vec))))
        (local.set $acc1 (f32x4.mul (local.get $y1) (v128.load offset=16 (local.get $vec))))
        (local.set $acc2 (f32x4.mul (local.get $y2) (v128.load offset=32 (local.get $vec))))
        (local.set $acc3 (f32x4.mul (local.get $y3) (v128.load offset=48 (local.get $vec))))
        (local.set $acc0
          (f32x4.add (f32x4.add (f32x4.add (local.get $acc0) (local.get $acc1)) (local.get $acc2))
            (local.get $acc3)))
        (local.set $d
          (f32.add
            (f32.add (f32x4.extract_lane 0 (local.get $acc0)) (f32x4.extract_lane 1 (local.get $acc0)))
            (f32.add (f32x4.extract_lane 2 (local.get $acc0)) (f32x4.extract_lane 3 (local.get $acc0)))))
        ;; t, the weight of y
        (local.set $t
          (select
            (f32.sub
              (select (f32.add (f32.const 1) (local.get $c1)) (f32.const 0) (f32.gt (local.get $w) (f32.const 0)))
              (f32.mul (local.get $c1) (local.get $d)))
            (f32.mul (local.get $c1) (local.get $d))
            (local.get $target)))
        (local.set $tv (f32x4.splat (local.get $t)))
        ;; out += t·y
        (v128.store (local.get $out)
          (f32x4.add (v128.load (local.get $out)) (f32x4.mul (local.get $tv) (local.get $y0))))
        (v128.store offset=16 (local.get $out)
          (f32x4.add (v128.load offset=16 (local.get $out)) (f32x4.mul (local.get $tv) (local.get $y1))))
        (v128.store offset=32 (local.get $out)
          (f32x4.add (v128.load offset=32 (local.get $out)) (f32x4.mul (local.get $tv) (local.get $y2))))
        (v128.store offset=48 (local.get $out)
          (f32x4.add (v128.load offset=48 (local.get $out)) (f32x4.mul (local.get $tv) (local.get $y3))))
        (local.set $q (i32.add (local.get $q) (i32.const 1)))
        (br $entry))))

  ;; alsCg(start, end, indptr, indices, data, X, Y, G, S, k, alpha, cgSteps, R): implicit's CG
  ;; update of rows [start, end) of X against the fixed factors Y.
  ;;   indptr, indices, data  the CSR matrix (int32, int32, float32); data's sign says whether an
  ;;                          entry is a positive (w > 0) or a negative (w ≤ 0) preference, and
  ;;                          its magnitude scales the confidence: c = 1 + alpha·|w|
  ;;   X, Y                   row factors (updated in place) and fixed factors, rows × k float32
  ;;   G                      YᵀY, k×k float32
  ;;   S                      4k floats of scratch private to the caller: x, r, p, Ap
  ;;   R                      λ_u of every row (float32), added to G's diagonal for row u
  ;; Solves (G + λ_u I + Σ_q c1_q y_q y_qᵀ) x = Σ_q [w_q > 0](1 + c1_q) y_q, c1 = alpha·|w|, for
  ;; each row u by at most cgSteps CG steps from the current x_u.
  (func $alsCg (export "alsCg")
    (param $start i32) (param $end i32) (param $indptr i32) (param $indices i32) (param $data i32)
    (param $X i32) (param $Y i32) (param $G i32) (param $S i32) (param $k i32) (param $alpha f32)
    (param $cgSteps i32) (param $R i32)
    (local $kb i32) (local $u i32) (local $qs i32) (local $qe i32)
    (local $xo i32) (local $xs i32) (local $rs i32) (local $ps i32) (local $aps i32) (local $step i32)
    (local $lambda f32) (local $sv v128)
    (local $rsold f64) (local $rsnew f64) (local $pap f64)
    (local.set $kb (i32.shl (local.get $k) (i32.const 2)))
    (local.set $xs (local.get $S))
    (local.set $rs (i32.add (local.get $xs) (local.get $kb)))
    (local.set $ps (i32.add (local.get $rs) (local.get $kb)))
    (local.set $aps (i32.add (local.get $ps) (local.get $kb)))

    (local.set $u (local.get $start))
    (block $done
      (loop $row
        (br_if $done (i32.ge_s (local.get $u) (local.get $end)))
        (local.set $xo (i32.add (local.get $X) (i32.mul (local.get $u) (local.get $kb))))
        (local.set $qs (i32.load (i32.add (local.get $indptr) (i32.shl (local.get $u) (i32.const 2)))))
        (local.set $qe
          (i32.load offset=4 (i32.add (local.get $indptr) (i32.shl (local.get $u) (i32.const 2)))))
        (call $copy (local.get $xs) (local.get $xo) (local.get $kb))
        (local.set $lambda (f32.load (i32.add (local.get $R) (i32.shl (local.get $u) (i32.const 2)))))

        ;; r = b − A x: start from −(G + λ_u I) x, then add each entry's term.
        (call $symv (local.get $G) (local.get $xs) (local.get $rs) (local.get $k) (local.get $lambda)
          (i32.const 1))
        (if (i32.eq (local.get $kb) (i32.const 128))
          (then
            (call $addEntries32 (local.get $qs) (local.get $qe) (local.get $indices) (local.get $data)
              (local.get $Y) (local.get $alpha) (local.get $xs) (local.get $rs) (i32.const 1)))
          (else (if (i32.eq (local.get $kb) (i32.const 64))
            (then
              (call $addEntries16 (local.get $qs) (local.get $qe) (local.get $indices) (local.get $data)
                (local.get $Y) (local.get $alpha) (local.get $xs) (local.get $rs) (i32.const 1)))
            (else
              (call $addEntries (local.get $qs) (local.get $qe) (local.get $indices) (local.get $data)
                (local.get $Y) (local.get $alpha) (local.get $kb) (local.get $xs) (local.get $rs) (i32.const 1))))))

        ;; p = r; rsold = r · r (in f64 from here, as the reference does)
        (call $copy (local.get $ps) (local.get $rs) (local.get $kb))
        (local.set $rsold
          (f64.promote_f32 (call $dot (local.get $rs) (local.get $rs) (local.get $kb))))
        (block $rowDone
          ;; Already solved (to float precision): leave x_u as it is.
          (br_if $rowDone (f64.lt (local.get $rsold) (f64.const 1e-20)))
          (block $cgDone
            (local.set $step (i32.const 0))
            (loop $cgStep
              (br_if $cgDone (i32.ge_s (local.get $step) (local.get $cgSteps)))
              ;; Ap = (G + λ_u I) p + Σ c1 (y · p) y
              (call $symv (local.get $G) (local.get $ps) (local.get $aps) (local.get $k) (local.get $lambda)
                (i32.const 0))
              (if (i32.eq (local.get $kb) (i32.const 128))
                (then
                  (call $addEntries32 (local.get $qs) (local.get $qe) (local.get $indices) (local.get $data)
                    (local.get $Y) (local.get $alpha) (local.get $ps) (local.get $aps) (i32.const 0)))
                (else (if (i32.eq (local.get $kb) (i32.const 64))
                  (then
                    (call $addEntries16 (local.get $qs) (local.get $qe) (local.get $indices) (local.get $data)
                      (local.get $Y) (local.get $alpha) (local.get $ps) (local.get $aps) (i32.const 0)))
                  (else
                    (call $addEntries (local.get $qs) (local.get $qe) (local.get $indices) (local.get $data)
                      (local.get $Y) (local.get $alpha) (local.get $kb) (local.get $ps) (local.get $aps) (i32.const 0))))))
              ;; A not positive along p (λ = 0 and a degenerate row): stop with what we have.
              (local.set $pap
                (f64.promote_f32 (call $dot (local.get $ps) (local.get $aps) (local.get $kb))))
              (br_if $cgDone (i32.eqz (f64.gt (local.get $pap) (f64.const 0))))
              ;; α = rsold / pAp; x += αp; r −= αAp
              (local.set $sv
                (f32x4.splat (f32.demote_f64 (f64.div (local.get $rsold) (local.get $pap)))))
              (local.set $rsnew
                (f64.promote_f32
                  (call $cgUpdate (local.get $xs) (local.get $rs) (local.get $ps) (local.get $aps)
                    (local.get $sv) (local.get $kb))))
              (br_if $cgDone (f64.lt (local.get $rsnew) (f64.const 1e-20)))
              ;; p = r + (rsnew / rsold) p
              (local.set $sv
                (f32x4.splat (f32.demote_f64 (f64.div (local.get $rsnew) (local.get $rsold)))))
              (call $xpby (local.get $ps) (local.get $rs) (local.get $sv) (local.get $kb))
              (local.set $rsold (local.get $rsnew))
              (local.set $step (i32.add (local.get $step) (i32.const 1)))
              (br $cgStep)))
          (call $copy (local.get $xo) (local.get $xs) (local.get $kb)))
        (local.set $u (i32.add (local.get $u) (i32.const 1)))
        (br $row)))))
