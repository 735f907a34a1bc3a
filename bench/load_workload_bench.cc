// load_workload_bench: what it costs `sluice load` to make an event, beside its baselines, in
// one binary so --benchmark_enable_random_interleaving runs them under the same conditions.
// The generator shares a 2-CPU machine with the daemon it loads, so its per-event CPU is part
// of what a load test disturbs.
//
//   Encode/<fraud|risk|both>/<uniform|zipf>
//       LoadWorkload::encode_next() into a buffer, one event per item: account draw, values,
//       frame encoding. zipf: accounts drawn with exponent 1.0 over 1M accounts.
//   EncodeBaseline
//       wire::encode() of a prebuilt TRANSACTION with only client_seq changing: the encoding
//       alone, the floor of Encode.
//   AccountDraw/<zipf_rejection_inversion|zipf_cdf_table|std_discrete|uniform>
//       One account rank in 1..1M per item: sluice's ZipfDistribution (O(1) memory), the usual
//       peer (a precomputed cumulative table searched with std::upper_bound, 8 MB), libstdc++'s
//       std::discrete_distribution over the same weights, and FastRandom::below (uniform).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "core/random.h"
#include "core/wire_format.h"
#include "tools/load_workload.h"

namespace sluice::tools {
namespace {

constexpr uint64_t kAccounts = 1'000'000;
constexpr double kZipf = 1.0;

void Encode(benchmark::State& state, LoadMix mix, double skew) {
  LoadWorkload workload({.mix = mix, .accounts = kAccounts, .skew = skew}, 0);
  std::array<std::byte, LoadWorkload::kMaxEventSize> buffer{};
  uint64_t seq = 0;
  for (auto _ : state) {
    ++seq;
    const size_t n = workload.encode_next(seq, static_cast<int64_t>(seq), buffer);
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(buffer.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_CAPTURE(Encode, fraud / uniform, LoadMix::kFraud, 0.0);
BENCHMARK_CAPTURE(Encode, fraud / zipf, LoadMix::kFraud, kZipf);
BENCHMARK_CAPTURE(Encode, risk / uniform, LoadMix::kRisk, 0.0);
BENCHMARK_CAPTURE(Encode, both / zipf, LoadMix::kBoth, kZipf);

void EncodeBaseline(benchmark::State& state) {
  wire::Transaction t{.event_time_ns = 1,
                      .account_id = 7,
                      .amount_minor = 1234,
                      .merchant_id = 99,
                      .currency = 978,
                      .channel = 1};
  std::array<std::byte, LoadWorkload::kMaxEventSize> buffer{};
  for (auto _ : state) {
    ++t.client_seq;
    const size_t n = wire::encode(t, buffer);
    benchmark::DoNotOptimize(n);
    benchmark::DoNotOptimize(buffer.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(EncodeBaseline);

void AccountDrawRejectionInversion(benchmark::State& state) {
  const ZipfDistribution zipf(kAccounts, kZipf);
  FastRandom random(1);
  for (auto _ : state) benchmark::DoNotOptimize(zipf(random));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(AccountDrawRejectionInversion)->Name("AccountDraw/zipf_rejection_inversion");

void AccountDrawCdfTable(benchmark::State& state) {
  std::vector<double> cdf(kAccounts);
  double sum = 0;
  for (uint64_t k = 1; k <= kAccounts; ++k) {
    sum += std::pow(static_cast<double>(k), -kZipf);
    cdf[k - 1] = sum;
  }
  FastRandom random(1);
  for (auto _ : state) {
    const double u = random.next_double() * sum;
    const auto it = std::upper_bound(cdf.begin(), cdf.end(), u);
    benchmark::DoNotOptimize(std::min<uint64_t>(it - cdf.begin(), kAccounts - 1) + 1);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(AccountDrawCdfTable)->Name("AccountDraw/zipf_cdf_table");

void AccountDrawStdDiscrete(benchmark::State& state) {
  std::vector<double> weights(kAccounts);
  for (uint64_t k = 1; k <= kAccounts; ++k)
    weights[k - 1] = std::pow(static_cast<double>(k), -kZipf);
  std::discrete_distribution<uint64_t> dist(weights.begin(), weights.end());
  std::mt19937_64 engine(1);
  for (auto _ : state) benchmark::DoNotOptimize(dist(engine) + 1);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(AccountDrawStdDiscrete)->Name("AccountDraw/std_discrete");

void AccountDrawUniform(benchmark::State& state) {
  FastRandom random(1);
  for (auto _ : state) benchmark::DoNotOptimize(random.below(kAccounts) + 1);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(AccountDrawUniform)->Name("AccountDraw/uniform");

}  // namespace
}  // namespace sluice::tools

BENCHMARK_MAIN();
