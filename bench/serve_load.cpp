// A bounded load test of softreg serve's predictions: N clients on loopback, each with its own
// keep-alive connection, POST the same image to /api/runs/RUN/predict for a fixed time. Prints requests
// per second, latency percentiles and the error count (any answer but 200, or no answer) as JSON.
//
//   serve_load URL RUN IMAGE [CLIENTS=50] [SECONDS=10]
//   serve_load http://127.0.0.1:8765/ latest shoe.png 50 10
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: serve_load URL RUN IMAGE [CLIENTS=50] [SECONDS=10]\n");
    return 2;
  }
  const std::string url = argv[1], run = argv[2];
  std::ifstream in(argv[3], std::ios::binary);
  const std::string image((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const int clients = argc > 4 ? std::atoi(argv[4]) : 50;
  const double seconds = argc > 5 ? std::atof(argv[5]) : 10;
  std::smatch match;
  if (image.empty() || clients < 1 || seconds <= 0 ||
      !std::regex_match(url, match, std::regex(R"(http://([^/:]+):(\d+)/?)"))) {
    std::fprintf(stderr,
                 "serve_load: need an http://host:port/ URL, a readable image, clients >= 1, seconds > 0\n");
    return 2;
  }
  const std::string host = match[1];
  const int port = std::stoi(match[2]);
  const std::string path = "/api/runs/" + run + "/predict";

  std::atomic<bool> stop{false};
  std::atomic<long> errors{0};
  std::mutex mutex;
  std::vector<double> latencies;  // milliseconds, every request
  std::string first_error;
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      httplib::Client client(host, port);
      client.set_keep_alive(true);
      client.set_tcp_nodelay(true);  // as browsers do; otherwise Nagle delays each request's body
      client.set_read_timeout(30, 0);
      std::vector<double> mine;
      while (!stop.load()) {
        const auto t0 = std::chrono::steady_clock::now();
        const httplib::Result result = client.Post(path.c_str(), image, "image/png");
        const auto t1 = std::chrono::steady_clock::now();
        if (!result || result->status != 200 || result->body.find("\"top\"") == std::string::npos) {
          ++errors;
          std::lock_guard lock(mutex);
          if (first_error.empty()) {
            first_error = result ? "status " + std::to_string(result->status) + ": " + result->body
                                 : "no answer: " + httplib::to_string(result.error());
          }
        }
        mine.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
      std::lock_guard lock(mutex);
      latencies.insert(latencies.end(), mine.begin(), mine.end());
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (std::thread& t : threads)
    t.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::sort(latencies.begin(), latencies.end());
  const auto percentile = [&](double p) {
    if (latencies.empty()) return 0.0;
    const auto i = static_cast<std::size_t>(p / 100 * static_cast<double>(latencies.size() - 1) + 0.5);
    return latencies[std::min(i, latencies.size() - 1)];
  };
  std::printf(
      "{\"clients\": %d, \"seconds\": %.2f, \"requests\": %zu, \"errors\": %ld, \"requests_per_second\": "
      "%.0f, "
      "\"p50_ms\": %.2f, \"p90_ms\": %.2f, \"p99_ms\": %.2f, \"max_ms\": %.2f}\n",
      clients, elapsed, latencies.size(), errors.load(), static_cast<double>(latencies.size()) / elapsed,
      percentile(50), percentile(90), percentile(99), latencies.empty() ? 0.0 : latencies.back());
  if (!first_error.empty()) std::fprintf(stderr, "serve_load: first error: %s\n", first_error.c_str());
  return errors.load() == 0 ? 0 : 1;
}
