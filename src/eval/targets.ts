/**
 * The project's measured targets, checked on an evaluation result (printed by `mend eval`).
 */
import { DEFAULT_FT_CONFIG } from "../baselines/fineTune";
import { EvalResult } from "./evaluate";

/** Target checks of the MEND core and evaluation issues, as printed lines; `ftConfig`: the FT settings evaluated. */
export function targetChecks(r: EvalResult, ftConfig: { lr: number; optimizer: string } = DEFAULT_FT_CONFIG): { name: string; value: number; target: string; ok: boolean }[] {
  const m = r.methods.MEND;
  const ft = r.methods.FT;
  const checks: { name: string; value: number; target: string; ok: boolean }[] = [];
  for (const name of ["MEND", "MEND-cal", "MEND-batch-cal", "MEND-batch-pres"]) {
    const x = r.methods[name];
    if (!x) continue;
    checks.push(
      { name: `${name} edit success (edit prompt)`, value: x.es, target: ">= 0.99", ok: x.es >= 0.99 },
      { name: `${name} held-out paraphrases`, value: x.paraphrase, target: ">= 0.95", ok: x.paraphrase >= 0.95 },
      { name: `${name} locality unchanged`, value: x.locality.overall, target: ">= 0.99", ok: x.locality.overall >= 0.99 },
      { name: `${name} locality, same subject`, value: x.locality.same_subject, target: ">= 0.99", ok: x.locality.same_subject >= 0.99 },
      { name: `${name} locality, same relation`, value: x.locality.same_relation, target: ">= 0.99", ok: x.locality.same_relation >= 0.99 },
      { name: `${name} locality, unrelated`, value: x.locality.unrelated, target: ">= 0.99", ok: x.locality.unrelated >= 0.99 },
    );
  }
  for (const name of ["MEND", "MEND-batch", "MEND-batch-cal", "MEND-batch-pres"]) {
    const k25 = r.batched[name]?.find((p) => p.k === 25);
    if (k25) checks.push({ name: `${name} batched ES at k = 25`, value: k25.es, target: ">= 0.90", ok: k25.es >= 0.9 });
  }
  if (ft && m) checks.push({ name: `FT (${ftConfig.optimizer} lr ${ftConfig.lr.toExponential(0)}) latency / MEND latency (mend bench also times lr 1e-4)`, value: ft.latency_ms / m.latency_ms, target: ">= 10", ok: ft.latency_ms / m.latency_ms >= 10 });
  const cal = r.methods["MEND-cal"];
  if (ft && cal) checks.push({ name: `FT latency / MEND-cal latency`, value: ft.latency_ms / cal.latency_ms, target: ">= 10", ok: ft.latency_ms / cal.latency_ms >= 10 });
  return checks;
}
