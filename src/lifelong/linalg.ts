/**
 * The small dense solves the lifelong methods need, in float64 on the CPU: tfjs has no Cholesky, no
 * triangular solve and no eigendecomposition, and every system here is n x n with n the rows of one
 * edit (a few) or the preserved keys (hundreds), so plain JavaScript is fast enough and exact
 * enough. Hand-written for that reason (README, "What is hand-written").
 *
 * Matrices are row-major Float64Arrays.
 */

/**
 * The Cholesky factor L (lower triangular, A = L Lᵀ) of a symmetric positive definite n x n matrix.
 * An error names the pivot that is not positive (A not positive definite, e.g. a ridge λ of 0 over
 * linearly dependent keys).
 */
export function cholesky(a: Float64Array, n: number, what = "matrix"): Float64Array {
  if (a.length !== n * n) throw new Error(`cholesky: ${what} has ${a.length} entries, expected ${n}x${n}`);
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let d = a[j * n + j];
    for (let k = 0; k < j; k++) d -= l[j * n + k] * l[j * n + k];
    if (!(d > 0)) throw new Error(`cholesky: ${what} is not positive definite (pivot ${j} is ${d}): the keys are linearly dependent; a larger ridge λ (LifelongOptions.ultraLambda or alphaLambda, in the library; the command line uses the defaults) makes it solvable`);
    const ljj = Math.sqrt(d);
    l[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = a[i * n + j];
      for (let k = 0; k < j; k++) s -= l[i * n + k] * l[j * n + k];
      l[i * n + j] = s / ljj;
    }
  }
  return l;
}

/** X = A⁻¹ B for A = L Lᵀ (from `cholesky`), B n x m row-major. */
export function choleskySolve(l: Float64Array, n: number, b: Float64Array, m: number): Float64Array {
  if (b.length !== n * m) throw new Error(`choleskySolve: right-hand side has ${b.length} entries, expected ${n}x${m}`);
  const x = Float64Array.from(b);
  for (let c = 0; c < m; c++) {
    for (let i = 0; i < n; i++) {
      // forward: L y = b
      let s = x[i * m + c];
      for (let k = 0; k < i; k++) s -= l[i * n + k] * x[k * m + c];
      x[i * m + c] = s / l[i * n + i];
    }
    for (let i = n - 1; i >= 0; i--) {
      // back: Lᵀ x = y
      let s = x[i * m + c];
      for (let k = i + 1; k < n; k++) s -= l[k * n + i] * x[k * m + c];
      x[i * m + c] = s / l[i * n + i];
    }
  }
  return x;
}

/** X = A⁻¹ B for a symmetric positive definite A (n x n) and B (n x m), row-major float64. */
export function solveSpd(a: Float64Array, n: number, b: Float64Array, m: number, what?: string): Float64Array {
  return choleskySolve(cholesky(a, n, what), n, b, m);
}
