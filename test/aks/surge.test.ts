import { describe, expect, test } from "vitest";
import { blueGreenEstimate, inPlaceEstimate, nodesFor, parseQuantity, surgePlan } from "../../src/services/aks/surge.js";

describe("AKS surge arithmetic", () => {
  test("percentages are of the pool size, rounded up, at least one node", () => {
    const pct = (v: number) => ({ kind: "percent" as const, value: v });
    expect(nodesFor(pct(33), 3)).toBe(1); // 0.99
    expect(nodesFor(pct(10), 3)).toBe(1); // 0.3
    expect(nodesFor(pct(10), 25)).toBe(3); // 2.5
    expect(nodesFor(pct(50), 5)).toBe(3); // 2.5
    expect(nodesFor(pct(100), 7)).toBe(7);
    expect(nodesFor(pct(1), 1000)).toBe(10);
    expect(nodesFor(pct(0), 10)).toBe(0);
    expect(nodesFor(pct(33), 0)).toBe(0);
    expect(nodesFor({ kind: "count", value: 5 }, 3)).toBe(5);
  });

  test("parse counts and percentages as the API writes them", () => {
    expect(parseQuantity("33%", "maxSurge", "p")).toEqual({ kind: "percent", value: 33 });
    expect(parseQuantity("5", "maxSurge", "p")).toEqual({ kind: "count", value: 5 });
    expect(() => parseQuantity("-1", "maxSurge", "pool1")).toThrow(/agent pool 'pool1': upgradeSettings\.maxSurge '-1'.*rule: surge-format/);
    expect(() => parseQuantity("150%", "maxUnavailable", "pool1")).toThrow(/above 100%/);
    expect(() => parseQuantity("1.5", "maxSurge", "pool1")).toThrow(/rule: surge-format/);
  });

  test("batches: ceil(count / (surge + unavailable)), capped at the pool size", () => {
    const b = (count: number, maxSurge?: string, maxUnavailable?: string) => {
      const s = surgePlan("p", count, { maxSurge, maxUnavailable });
      return [s.surgeNodes, s.unavailableNodes, s.batchSize, s.batches];
    };
    expect(b(10)).toEqual([1, 0, 1, 10]); // defaults: 10%, 0
    expect(b(20, "33%")).toEqual([7, 0, 7, 3]); // ceil(6.6) = 7
    expect(b(3, "10")).toEqual([10, 0, 3, 1]);
    expect(b(8, "0", "2")).toEqual([0, 2, 2, 4]);
    expect(b(8, "25%", "25%")).toEqual([2, 2, 4, 2]);
    expect(b(0, "2")).toEqual([2, 0, 0, 0]);
    expect(() => b(4, "0%", "0")).toThrow(/agent pool 'p'.*rule: surge-or-unavailable/);
  });

  test("defaults for drain timeout and soak; estimates", () => {
    const s = surgePlan("p", 6, { maxSurge: "2", nodeSoakDurationInMinutes: 4, drainTimeoutInMinutes: 10 });
    expect([s.drainTimeoutMinutes, s.soakMinutes, s.batches]).toEqual([10, 4, 3]);
    // per batch: 5 (surge nodes) + drain (3 typical / 10 worst) + 4 soak + 2 remove
    expect(inPlaceEstimate(s)).toEqual({ typical: 42, worstCase: 63 });
    // 8 create + 3 × (drain + 4) + 5 delete
    expect(blueGreenEstimate(s)).toEqual({ typical: 34, worstCase: 55 });
    expect(surgePlan("p", 1, {}).drainTimeoutMinutes).toBe(30);
  });
});
