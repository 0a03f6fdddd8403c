;; BPR: one sorted block of the SGD epoch, the SIMD twin of `bprEpoch` in ../kernels.ts (float32
;; lanes; the JavaScript kernel, in doubles, stays the reference). The kernel draws its negatives
;; from the same xoshiro128** stream with the same Lemire reduction as `Rng.int` (../random.ts), so
;; it visits the same (user, positive, negative) triples as the JavaScript kernel for a seed.
;;
;; Every pointer is a byte offset into the imported memory (a WasmArena, arena.ts). Vectors are
;; k float32 with k a multiple of 4 (the caller checks). Built by `npm run build:kernels` into
;; bpr.wasm and bpr.shared.wasm (the memory import declared `shared`); build.test.ts checks both.
(module
  (import "env" "exp" (func $exp (param f64) (result f64)))
  (import "env" "memory" (memory 1))

  ;; bpr(indptr, indices, qbuf, X, Y, bias, k, nItems, lr, reg, count, state, negatives) → the
  ;; number of samples whose positive already outscored its negative (x_uij > 0).
  ;;   indptr, indices  the CSR interactions (int32); each row's indices sorted ascending
  ;;   qbuf             `count` ascending stored-entry indices: the block's positives
  ;;   X, Y, bias       user factors, item factors (rows × k float32) and item biases, updated
  ;;   state            six int32: the four generator words (read and written back), the number of
  ;;                    skipped samples (written) and the row of qbuf[0] (read)
  ;;   negatives        candidates per sample: the highest-scoring non-positive is kept (dynamic
  ;;                    negative sampling); 1 draws one uniform non-positive
  ;; A sample is skipped when its user has every item, or when 64 draws found no non-positive.
  ;;
  ;; One function on purpose: each step of a sample (draw, membership test, scores, update) is
  ;; written out once, in the order the sample runs them, rather than called, because a call
  ;; spills every live value of the loop around it and this loop runs once per training sample.
  (func $bpr (export "bpr")
    (param $indptr i32) (param $indices i32) (param $qbuf i32) (param $X i32) (param $Y i32)
    (param $bias i32) (param $k i32) (param $nItems i32) (param $lr f32) (param $reg f32)
    (param $count i32) (param $state i32) (param $negatives i32) (result i32)
    (local $kb i32) (local $thresh i32) (local $n i32) (local $q i32) (local $u i32)
    (local $i i32) (local $j i32) (local $rs i32) (local $re i32) (local $tries i32) (local $c i32)
    (local $cand i32) (local $found i32) (local $lo i32) (local $hi i32) (local $mid i32) (local $mv i32)
    (local $uo i32) (local $io i32) (local $jo i32) (local $correct i32) (local $skipped i32)
    (local $s0 i32) (local $s1 i32) (local $s2 i32) (local $s3 i32) (local $draw i32) (local $t i32)
    (local $m i64)
    (local $pa i32) (local $pb i32) (local $pc i32) (local $pe i32)
    (local $xuij f32) (local $z f32) (local $bi f32) (local $bj f32) (local $best f32) (local $sc f32)
    (local $d f32)
    (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128)
    (local $lrv v128) (local $regv v128) (local $zv v128) (local $w v128) (local $hiv v128) (local $hjv v128)
    (local.set $kb (i32.shl (local.get $k) (i32.const 2)))
    (local.set $s0 (i32.load (local.get $state)))
    (local.set $s1 (i32.load offset=4 (local.get $state)))
    (local.set $s2 (i32.load offset=8 (local.get $state)))
    (local.set $s3 (i32.load offset=12 (local.get $state)))
    (local.set $lrv (f32x4.splat (local.get $lr)))
    (local.set $regv (f32x4.splat (local.get $reg)))
    ;; The row of the block's first entry comes in state[5]; rows only advance as entries ascend.
    (local.set $u (i32.load offset=20 (local.get $state)))
    ;; 2^32 mod nItems: Lemire's rejection threshold for uniform draws below nItems
    (local.set $thresh
      (i32.rem_u (i32.sub (i32.const 0) (local.get $nItems)) (local.get $nItems)))

    (local.set $n (i32.const 0))
    (block $blockDone
      (loop $sample
        (br_if $blockDone (i32.ge_s (local.get $n) (local.get $count)))
        (block $nextSample
          ;; The positive: entry q of row u (advance u while indptr[u + 1] ≤ q).
          (local.set $q (i32.load (i32.add (local.get $qbuf) (i32.shl (local.get $n) (i32.const 2)))))
          (block $rowFound
            (loop $advance
              (br_if $rowFound
                (i32.gt_s
                  (i32.load offset=4 (i32.add (local.get $indptr) (i32.shl (local.get $u) (i32.const 2))))
                  (local.get $q)))
              (local.set $u (i32.add (local.get $u) (i32.const 1)))
              (br $advance)))
          (local.set $i (i32.load (i32.add (local.get $indices) (i32.shl (local.get $q) (i32.const 2)))))
          (local.set $rs (i32.load (i32.add (local.get $indptr) (i32.shl (local.get $u) (i32.const 2)))))
          (local.set $re
            (i32.load offset=4 (i32.add (local.get $indptr) (i32.shl (local.get $u) (i32.const 2)))))
          ;; A user with every item has no negative.
          (if (i32.ge_s (i32.sub (local.get $re) (local.get $rs)) (local.get $nItems))
            (then
              (local.set $skipped (i32.add (local.get $skipped) (i32.const 1)))
              (br $nextSample)))
          (local.set $uo (i32.add (local.get $X) (i32.mul (local.get $u) (local.get $kb))))

          ;; The negative j, as kernels.ts draws it: uniform items until one is not in the user's
          ;; row (at most 64 draws, else the sample is skipped); then, when negatives > 1, each of
          ;; negatives − 1 more uniform draws that is not a positive replaces j if it scores
          ;; higher (bias + x_u · y), dynamic negative sampling. c counts the candidates taken.
          (local.set $c (i32.const 0))
          (local.set $tries (i32.const 0))
          (loop $candidate
            ;; cand = a uniform item (Rng.int): xoshiro128** draws, Lemire's multiply-shift,
            ;; redrawing while the low word of draw·nItems is below the threshold (no bias).
            (loop $redraw
              (local.set $draw
                (i32.mul (i32.rotl (i32.mul (local.get $s1) (i32.const 5)) (i32.const 7)) (i32.const 9)))
              (local.set $t (i32.shl (local.get $s1) (i32.const 9)))
              (local.set $s2 (i32.xor (local.get $s2) (local.get $s0)))
              (local.set $s3 (i32.xor (local.get $s3) (local.get $s1)))
              (local.set $s1 (i32.xor (local.get $s1) (local.get $s2)))
              (local.set $s0 (i32.xor (local.get $s0) (local.get $s3)))
              (local.set $s2 (i32.xor (local.get $s2) (local.get $t)))
              (local.set $s3 (i32.rotl (local.get $s3) (i32.const 11)))
              (local.set $m
                (i64.mul (i64.extend_i32_u (local.get $draw)) (i64.extend_i32_u (local.get $nItems))))
              (br_if $redraw (i32.lt_u (i32.wrap_i64 (local.get $m)) (local.get $thresh))))
            (local.set $cand (i32.wrap_i64 (i64.shr_u (local.get $m) (i64.const 32))))

            ;; found = cand is a positive: binary search of the user's sorted row
            (local.set $found (i32.const 0))
            (local.set $lo (local.get $rs))
            (local.set $hi (i32.sub (local.get $re) (i32.const 1)))
            (block $searched
              (loop $halve
                (br_if $searched (i32.gt_s (local.get $lo) (local.get $hi)))
                (local.set $mid (i32.shr_u (i32.add (local.get $lo) (local.get $hi)) (i32.const 1)))
                (local.set $mv
                  (i32.load (i32.add (local.get $indices) (i32.shl (local.get $mid) (i32.const 2)))))
                (if (i32.lt_s (local.get $mv) (local.get $cand))
                  (then (local.set $lo (i32.add (local.get $mid) (i32.const 1))))
                  (else
                    (if (i32.gt_s (local.get $mv) (local.get $cand))
                      (then (local.set $hi (i32.sub (local.get $mid) (i32.const 1))))
                      (else
                        (local.set $found (i32.const 1))
                        (br $searched)))))
                (br $halve)))

            (if (i32.eqz (local.get $found))
              (then
                (if (i32.gt_s (local.get $negatives) (i32.const 1))
                  (then
                    ;; sc = bias[cand] + x_u · y_cand
                    (local.set $pa (local.get $uo))
                    (local.set $pb (i32.add (local.get $Y) (i32.mul (local.get $cand) (local.get $kb))))
                    (local.set $pe (i32.add (local.get $uo) (local.get $kb)))
                    (local.set $acc0 (v128.const i32x4 0 0 0 0))
                    (local.set $acc1 (v128.const i32x4 0 0 0 0))
                    (local.set $acc2 (v128.const i32x4 0 0 0 0))
                    (local.set $acc3 (v128.const i32x4 0 0 0 0))
                    (block $scoreTail
                      (loop $scoreGroup
                        (br_if $scoreTail (i32.gt_u (i32.add (local.get $pa) (i32.const 64)) (local.get $pe)))
                        (local.set $acc0 (f32x4.add (local.get $acc0)
                          (f32x4.mul (v128.load (local.get $pa)) (v128.load (local.get $pb)))))
                        (local.set $acc1 (f32x4.add (local.get $acc1)
                          (f32x4.mul (v128.load offset=16 (local.get $pa)) (v128.load offset=16 (local.get $pb)))))
                        (local.set $acc2 (f32x4.add (local.get $acc2)
                          (f32x4.mul (v128.load offset=32 (local.get $pa)) (v128.load offset=32 (local.get $pb)))))
                        (local.set $acc3 (f32x4.add (local.get $acc3)
                          (f32x4.mul (v128.load offset=48 (local.get $pa)) (v128.load offset=48 (local.get $pb)))))
                        (local.set $pa (i32.add (local.get $pa) (i32.const 64)))
                        (local.set $pb (i32.add (local.get $pb) (i32.const 64)))
                        (br $scoreGroup)))
                    ;; the last zero to three vectors, into accumulators 0, 1, 2
                    (if (i32.lt_u (local.get $pa) (local.get $pe))
                      (then
                        (local.set $acc0 (f32x4.add (local.get $acc0)
                          (f32x4.mul (v128.load (local.get $pa)) (v128.load (local.get $pb)))))
                        (if (i32.lt_u (i32.add (local.get $pa) (i32.const 16)) (local.get $pe))
                          (then
                            (local.set $acc1 (f32x4.add (local.get $acc1)
                              (f32x4.mul (v128.load offset=16 (local.get $pa)) (v128.load offset=16 (local.get $pb)))))
                            (if (i32.lt_u (i32.add (local.get $pa) (i32.const 32)) (local.get $pe))
                              (then
                                (local.set $acc2 (f32x4.add (local.get $acc2)
                                  (f32x4.mul (v128.load offset=32 (local.get $pa)) (v128.load offset=32 (local.get $pb)))))))))))
                    (local.set $acc0
                      (f32x4.add (f32x4.add (f32x4.add (local.get $acc0) (local.get $acc1)) (local.get $acc2))
                        (local.get $acc3)))
                    (local.set $d
                      (f32.add
                        (f32.add (f32x4.extract_lane 0 (local.get $acc0)) (f32x4.extract_lane 1 (local.get $acc0)))
                        (f32.add (f32x4.extract_lane 2 (local.get $acc0)) (f32x4.extract_lane 3 (local.get $acc0)))))
                    (local.set $sc
                      (f32.add (local.get $d)
                        (f32.load (i32.add (local.get $bias) (i32.shl (local.get $cand) (i32.const 2))))))))
                (if (i32.or (i32.eqz (local.get $c)) (f32.gt (local.get $sc) (local.get $best)))
                  (then
                    (local.set $best (local.get $sc))
                    (local.set $j (local.get $cand))))
                (local.set $c (i32.add (local.get $c) (i32.const 1))))
              (else
                (if (i32.eqz (local.get $c))
                  (then
                    ;; Still looking for the first negative.
                    (local.set $tries (i32.add (local.get $tries) (i32.const 1)))
                    (if (i32.ge_s (local.get $tries) (i32.const 64))
                      (then
                        (local.set $skipped (i32.add (local.get $skipped) (i32.const 1)))
                        (br $nextSample))))
                  (else (local.set $c (i32.add (local.get $c) (i32.const 1)))))))
            (br_if $candidate (i32.lt_s (local.get $c) (local.get $negatives))))

          (local.set $io (i32.add (local.get $Y) (i32.mul (local.get $i) (local.get $kb))))
          (local.set $jo (i32.add (local.get $Y) (i32.mul (local.get $j) (local.get $kb))))
          (local.set $bi (f32.load (i32.add (local.get $bias) (i32.shl (local.get $i) (i32.const 2)))))
          (local.set $bj (f32.load (i32.add (local.get $bias) (i32.shl (local.get $j) (i32.const 2)))))
          ;; x_uij = b_i − b_j + x_u · (y_i − y_j)
          (local.set $pa (local.get $uo))
          (local.set $pb (local.get $io))
          (local.set $pc (local.get $jo))
          (local.set $pe (i32.add (local.get $uo) (local.get $kb)))
          (local.set $acc0 (v128.const i32x4 0 0 0 0))
          (local.set $acc1 (v128.const i32x4 0 0 0 0))
          (local.set $acc2 (v128.const i32x4 0 0 0 0))
          (local.set $acc3 (v128.const i32x4 0 0 0 0))
          (block $diffTail
            (loop $diffGroup
              (br_if $diffTail (i32.gt_u (i32.add (local.get $pa) (i32.const 64)) (local.get $pe)))
              (local.set $acc0 (f32x4.add (local.get $acc0)
                (f32x4.mul (v128.load (local.get $pa))
                (f32x4.sub (v128.load (local.get $pb)) (v128.load (local.get $pc))))))
              (local.set $acc1 (f32x4.add (local.get $acc1)
                (f32x4.mul (v128.load offset=16 (local.get $pa))
                (f32x4.sub (v128.load offset=16 (local.get $pb)) (v128.load offset=16 (local.get $pc))))))
              (local.set $acc2 (f32x4.add (local.get $acc2)
                (f32x4.mul (v128.load offset=32 (local.get $pa))
                (f32x4.sub (v128.load offset=32 (local.get $pb)) (v128.load offset=32 (local.get $pc))))))
              (local.set $acc3 (f32x4.add (local.get $acc3)
                (f32x4.mul (v128.load offset=48 (local.get $pa))
                (f32x4.sub (v128.load offset=48 (local.get $pb)) (v128.load offset=48 (local.get $pc))))))
              (local.set $pa (i32.add (local.get $pa) (i32.const 64)))
              (local.set $pb (i32.add (local.get $pb) (i32.const 64)))
              (local.set $pc (i32.add (local.get $pc) (i32.const 64)))
              (br $diffGroup)))
          ;; the last zero to three vectors, into accumulators 0, 1, 2
          (if (i32.lt_u (local.get $pa) (local.get $pe))
            (then
              (local.set $acc0 (f32x4.add (local.get $acc0)
                (f32x4.mul (v128.load (local.get $pa))
                (f32x4.sub (v128.load (local.get $pb)) (v128.load (local.get $pc))))))
              (if (i32.lt_u (i32.add (local.get $pa) (i32.const 16)) (local.get $pe))
                (then
                  (local.set $acc1 (f32x4.add (local.get $acc1)
                    (f32x4.mul (v128.load offset=16 (local.get $pa))
                (f32x4.sub (v128.load offset=16 (local.get $pb)) (v128.load offset=16 (local.get $pc))))))
                  (if (i32.lt_u (i32.add (local.get $pa) (i32.const 32)) (local.get $pe))
                    (then
                      (local.set $acc2 (f32x4.add (local.get $acc2)
                        (f32x4.mul (v128.load offset=32 (local.get $pa))
                (f32x4.sub (v128.load offset=32 (local.get $pb)) (v128.load offset=32 (local.get $pc))))))))))))
          (local.set $acc0
            (f32x4.add (f32x4.add (f32x4.add (local.get $acc0) (local.get $acc1)) (local.get $acc2))
              (local.get $acc3)))
          (local.set $d
            (f32.add
              (f32.add (f32x4.extract_lane 0 (local.get $acc0)) (f32x4.extract_lane 1 (local.get $acc0)))
              (f32.add (f32x4.extract_lane 2 (local.get $acc0)) (f32x4.extract_lane 3 (local.get $acc0)))))
          (local.set $xuij (f32.add (f32.sub (local.get $bi) (local.get $bj)) (local.get $d)))
          (if (f32.gt (local.get $xuij) (f32.const 0))
            (then (local.set $correct (i32.add (local.get $correct) (i32.const 1)))))
          ;; z = 1 / (1 + exp(x_uij)) = σ(−x_uij), the exponential in f64 (Math.exp)
          (local.set $z
            (f32.div
              (f32.const 1)
              (f32.add (f32.const 1) (f32.demote_f64 (call $exp (f64.promote_f32 (local.get $xuij)))))))
          ;; b_i += lr (z − reg b_i); b_j += lr (−z − reg b_j)
          (f32.store (i32.add (local.get $bias) (i32.shl (local.get $i) (i32.const 2)))
            (f32.add (local.get $bi)
              (f32.mul (local.get $lr)
                (f32.sub (local.get $z) (f32.mul (local.get $reg) (local.get $bi))))))
          (f32.store (i32.add (local.get $bias) (i32.shl (local.get $j) (i32.const 2)))
            (f32.add (local.get $bj)
              (f32.mul (local.get $lr)
                (f32.sub
                  (f32.sub (f32.const 0) (local.get $z))
                  (f32.mul (local.get $reg) (local.get $bj))))))
          ;; The factors, every update from the values before the step:
          ;;   x_u += lr (z (y_i − y_j) − reg x_u)
          ;;   y_i += lr (z x_u − reg y_i)
          ;;   y_j += lr (−z x_u − reg y_j), written y_j −= lr (z x_u + reg y_j)
          (local.set $zv (f32x4.splat (local.get $z)))
          (local.set $pe (i32.add (local.get $uo) (local.get $kb)))
          (loop $update
            (local.set $w (v128.load (local.get $uo)))
            (local.set $hiv (v128.load (local.get $io)))
            (local.set $hjv (v128.load (local.get $jo)))
            (v128.store (local.get $uo)
              (f32x4.add (local.get $w)
                (f32x4.mul (local.get $lrv)
                  (f32x4.sub
                    (f32x4.mul (local.get $zv) (f32x4.sub (local.get $hiv) (local.get $hjv)))
                    (f32x4.mul (local.get $regv) (local.get $w))))))
            (v128.store (local.get $io)
              (f32x4.add (local.get $hiv)
                (f32x4.mul (local.get $lrv)
                  (f32x4.sub
                    (f32x4.mul (local.get $zv) (local.get $w))
                    (f32x4.mul (local.get $regv) (local.get $hiv))))))
            (v128.store (local.get $jo)
              (f32x4.sub (local.get $hjv)
                (f32x4.mul (local.get $lrv)
                  (f32x4.add
                    (f32x4.mul (local.get $zv) (local.get $w))
                    (f32x4.mul (local.get $regv) (local.get $hjv))))))
            (local.set $uo (i32.add (local.get $uo) (i32.const 16)))
            (local.set $io (i32.add (local.get $io) (i32.const 16)))
            (local.set $jo (i32.add (local.get $jo) (i32.const 16)))
            (br_if $update (i32.lt_u (local.get $uo) (local.get $pe)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $sample)))

    (i32.store (local.get $state) (local.get $s0))
    (i32.store offset=4 (local.get $state) (local.get $s1))
    (i32.store offset=8 (local.get $state) (local.get $s2))
    (i32.store offset=12 (local.get $state) (local.get $s3))
    (i32.store offset=16 (local.get $state) (local.get $skipped))
    (local.get $correct)))
