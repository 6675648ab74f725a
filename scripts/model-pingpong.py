#!/usr/bin/env python3
"""A model of the barrier protocol of the persistent sm_90a GEMM (kernels/gemm_sm90.cuh).

The mbarrier pipelines hang or read stale tiles, rather than fail, when the protocol is
wrong, and a GPU is not always at hand. This runs the kernel's protocol, as written there,
in a model under random interleavings and checks that it never deadlocks, that every
consumer reads the stage round it expects, that no warp waits on a turn barrier that has
already run two phases past it, and that no TMA load overwrites a stage a consumer still
reads. Modelled: one producer thread and two consumer warpgroups of 4 warps per CTA (a
wgmma group completes once every warp has issued it; the leader in warp 0 releases
stages; one warp runs far behind the others), CTAs per cluster CM = 1 or 2 (B halves
multicast to both), cooperative (both consumers read every stage) or ping-pong (each
consumer owns alternate tiles; the "turn" barriers, to which every thread arrives, hand
the main loop over), STAGES = 4 or 5, the incremental ring (Ring<S>, skip), parity waits
(try_wait.parity succeeds while the barrier's current phase has the other parity), TMA
transactions that land in any order, also before the expect_tx.

It also checks itself: without the turn hand-off, with the skip's round parity dropped,
or with only the leader arriving on the turn barrier (a lagging warp then finds it two
phases on with one K tile), the model must report a failure.

Usage: scripts/model-pingpong.py [RUNS]   (exit status 1 on any failure)
"""

import random
import sys


class MBar:
    """An mbarrier: `count` arrivals and a transaction count complete a phase."""

    def __init__(self, count):
        self.count, self.pending, self.tx, self.phase = count, count, 0, 0

    def arrive(self, tx=0):
        self.tx += tx
        self.pending -= 1
        self._check()

    def complete_tx(self, n):
        self.tx -= n
        self._check()

    def _check(self):
        assert self.pending >= 0, "more arrivals than the barrier counts"
        if self.pending == 0 and self.tx == 0:
            self.phase += 1
            self.pending = self.count

    def passed(self, parity):
        """mbarrier.try_wait.parity."""
        return (self.phase & 1) != parity


class Ring:
    """Ring<S> of gemm_sm90.cuh."""

    def __init__(self, stages):
        self.S, self.stage, self.phase, self.wrapped = stages, 0, 0, False

    def next(self):
        self.stage += 1
        if self.stage == self.S:
            self.stage, self.phase, self.wrapped = 0, self.phase ^ 1, True

    def skip(self, n, round_parity=True):
        """Ring<S>::skip; round_parity=False is the model's self-check mutation."""
        self.stage += n % self.S
        self.phase ^= (n // self.S) & 1 if round_parity else 0
        if self.stage >= self.S:
            self.stage -= self.S
            self.phase ^= 1


WARPS = 4  # warps per consumer warpgroup


def simulate(cm, stages, units, ktiles, pingpong, seed, mutation=None, slow=0.02, max_steps=400_000):
    """Returns None when the run is correct, else what went wrong."""
    rnd = random.Random(seed)
    readers = 1 if pingpong else 2
    # mutation "leader-turn": one arrival (the leader's) instead of every thread's.
    turn_count = 1 if mutation == "leader-turn" else WARPS
    ctas = [
        dict(
            full=[MBar(1) for _ in range(stages)],
            empty=[MBar(readers * cm) for _ in range(stages)],
            turn=[MBar(turn_count), MBar(turn_count)],
            tag=[None] * stages,  # which ring position a stage holds; None while loading
            loading=[None] * stages,  # the ring position whose parts are landing
            landed=[set() for _ in range(stages)],
            held=[set() for _ in range(stages)],
            issued=[[0] * WARPS for _ in range(2)],  # wgmma groups each warp has issued
            named=[[0, 0] for _ in range(2)],  # bar.sync 1 + c: arrivals, generation
        )
        for _ in range(cm)
    ]
    in_flight = []  # TMA transactions: (destination CTA, stage, ring position, part)

    def producer(rank):
        cta, ring, it = ctas[rank], Ring(stages), 0
        for _ in range(units):
            for _ in range(ktiles):
                s = ring.stage
                if ring.wrapped:
                    while not cta["empty"][s].passed(ring.phase ^ 1):
                        yield
                # The A tile and cm halves of B (one from each CTA of the cluster).
                cta["full"][s].arrive(tx=1 + cm)
                in_flight.append((rank, s, it, "A"))
                for dst in range(cm):
                    in_flight.append((dst, s, it, f"B{rank}"))
                it += 1
                ring.next()
                yield

    def release(rank, c, s, it):
        ctas[rank]["held"][s].discard((c, it))
        for dst in range(cm):
            ctas[dst]["empty"][s].arrive()

    def warp(rank, c, w):
        """Warp w of consumer c; warp 0 holds the leader thread (stage releases)."""
        cta, ring, it = ctas[rank], Ring(stages), 0
        issued = cta["issued"][c]

        def complete(g):  # a wgmma group completes once every warp has issued it
            return g < 0 or min(issued) > g

        for j in range(units):
            if pingpong:
                if j & 1 != c:
                    ring.skip(ktiles, round_parity=mutation != "skip-parity")
                    it += ktiles
                    continue
                if j > 0 and mutation != "no-turn":
                    phase = (j - 1) >> 1
                    while not cta["turn"][c].passed(phase & 1):
                        if cta["turn"][c].phase >= phase + 2:
                            raise AssertionError(
                                f"CTA {rank} consumer {c} warp {w} waits for turn phase {phase}, which is 2 behind"
                            )
                        yield
            prev = None
            for _ in range(ktiles):
                s = ring.stage
                while not cta["full"][s].passed(ring.phase):
                    yield
                if cta["tag"][s] != it:
                    raise AssertionError(f"CTA {rank} consumer {c} read stage {s} holding {cta['tag'][s]}, not {it}")
                if w == 0:
                    cta["held"][s].add((c, it))
                issued[w] += 1
                group = issued[w] - 1
                yield
                while not complete(group - 1):  # wgmma_wait<1>
                    yield
                if prev is not None and w == 0:
                    release(rank, c, *prev)
                prev = (s, it)
                it += 1
                ring.next()
            if pingpong and (w == 0 or turn_count == WARPS):
                cta["turn"][1 - c].arrive()
            yield
            while not complete(issued[w] - 1):  # wgmma_wait<0>
                yield
            if prev is not None and w == 0:
                release(rank, c, *prev)
            named = cta["named"][c]  # the epilogue's warpgroup barrier, then the epilogue
            generation = named[1]
            named[0] += 1
            if named[0] == WARPS:
                named[0], named[1] = 0, named[1] + 1
            while named[1] == generation:
                yield
            for _ in range(rnd.randint(0, 4)):
                yield

    threads, weights = [], []
    slow_warp = rnd.randrange(WARPS)  # one warp of every consumer runs far behind the others
    for rank in range(cm):
        threads.append(producer(rank))
        weights.append(1.0)
        for c in range(2):
            for w in range(WARPS):
                threads.append(warp(rank, c, w))
                weights.append(slow if w == slow_warp else 1.0)
    try:
        for _ in range(max_steps):
            if not threads and not in_flight:
                return None
            x = rnd.random() * (sum(weights) + (1.0 if in_flight else 0.0))
            k = 0
            while k < len(threads) and x >= weights[k]:
                x -= weights[k]
                k += 1
            if k == len(threads):
                dst, s, it, part = in_flight.pop(rnd.randrange(len(in_flight)))
                cta = ctas[dst]
                if cta["held"][s]:
                    raise AssertionError(f"a TMA load overwrites stage {s} of CTA {dst}, held by {cta['held'][s]}")
                if cta["loading"][s] != it:  # the first part of a new round: the old tile is gone
                    cta["tag"][s], cta["loading"][s], cta["landed"][s] = None, it, set()
                cta["landed"][s].add(part)
                if len(cta["landed"][s]) == 1 + cm:
                    cta["tag"][s] = it
                cta["full"][s].complete_tx(1)
                continue
            try:
                next(threads[k])
            except StopIteration:
                threads.pop(k)
                weights.pop(k)
        return "deadlock (no progress within the step limit)"
    except AssertionError as e:
        return str(e)


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    failures = 0
    for seed in range(runs):
        rnd = random.Random(seed)
        cfg = dict(
            cm=rnd.choice([1, 2]),
            stages=rnd.choice([4, 5]),
            units=rnd.randint(1, 7),
            ktiles=rnd.choice([1, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 13]),
            pingpong=rnd.random() < 0.75,
        )
        err = simulate(seed=seed, **cfg)
        if err:
            failures += 1
            print(f"FAIL seed {seed} {cfg}: {err}")
    # The model must catch a broken protocol: each mutation must fail somewhere.
    for mutation, ktiles in [("no-turn", (3, 6, 7)), ("skip-parity", (3, 6, 7)), ("leader-turn", (1,))]:
        cases = [(s, kt) for s in range(40) for kt in ktiles]
        caught = sum(
            simulate(cm=1 + s % 2, stages=5, units=6, ktiles=kt, pingpong=True, seed=s, mutation=mutation) is not None
            for s, kt in cases
        )
        print(f"mutation {mutation}: {caught} of {len(cases)} runs fail, as they must")
        if caught == 0:
            failures += 1
            print(f"FAIL: the model does not catch the mutation {mutation}")
    print(f"model-pingpong: {runs} runs, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
