-- Prints wrk's totals as one machine-readable line, so the benchmarks read
-- exact counts and percentiles (microseconds) instead of rounded text.
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "MGWRK requests=%d duration_us=%d bytes=%d status_errors=%d "
        .. "connect=%d read=%d write=%d timeout=%d "
        .. "p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f\n",
        summary.requests, summary.duration, summary.bytes, e.status,
        e.connect, e.read, e.write, e.timeout,
        latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max, latency.mean))
end
