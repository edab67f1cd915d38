// Unit tests for the stage 04 coroutine runtime: tasks, create_task, cancellation,
// timers, wait_for, gather, streams -- and the compiler traps it avoids.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <coroutine>
#include <csignal>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "coro/loop.hpp"
#include "coro/streams.hpp"
#include "coro/uv.hpp"
#include "coro_test_helpers.hpp"

using namespace std::chrono_literals;
using coro::Coroutine;
using namespace coro_test;

namespace {

Coroutine<int> answer() {
    co_return 42;
}
Coroutine<int> fails() {
    throw std::runtime_error("boom");
    co_return 0;
}

// Sleeps "forever"; counts the cancellation that ends it.
Coroutine<void> sleep_until_cancelled(int& cancelled) {
    try {
        co_await coro::sleep(std::chrono::hours(1));
    } catch (const coro::CancelledError&) {
        ++cancelled;
        throw;
    }
}

TEST(Coroutine, ReturnsItsValue) {
    EXPECT_EQ(coro::run(answer()), 42);
}

TEST(Coroutine, IsLazy) {
    bool ran = false;
    auto body = [&]() -> Coroutine<void> {
        ran = true;
        co_return;
    };
    {
        Coroutine<void> t = body();
        EXPECT_FALSE(ran) << "a Task must not run before it is awaited";
    }
    EXPECT_FALSE(ran);
}

TEST(Coroutine, PropagatesExceptionsToTheAwaiter) {
    auto main = []() -> Coroutine<std::string> {
        try {
            co_await fails();
        } catch (const std::runtime_error& e) {
            co_return e.what();
        }
        co_return "no exception";
    };
    EXPECT_EQ(coro::run(main()), "boom");
    EXPECT_THROW(coro::run(fails()), std::runtime_error);
}

// g++ 12 does not make symmetric transfer a tail call at -O0 or under
// sanitizers. Children that finish at once must not pile up stack frames.
TEST(Coroutine, AMillionSynchronousAwaitsDoNotOverflowTheStack) {
    auto main = []() -> Coroutine<long> {
        long sum = 0;
        for (int i = 0; i < 1'000'000; ++i)
            sum += co_await answer();
        co_return sum;
    };
    EXPECT_EQ(coro::run(main()), 42'000'000L);
}

TEST(Coroutine, DeepChainsOfNestedTasksWork) {
    struct Deep {
        static Coroutine<int> down(int n) {
            if (n == 0) co_return 0;
            co_return 1 + co_await down(n - 1);
        }
    };
    EXPECT_EQ(coro::run(Deep::down(1000)), 1000);  // real recursion: depth costs stack
}

TEST(CreateTask, RunsTasksConcurrently) {
    auto main = []() -> Coroutine<std::string> {
        std::string order;
        auto worker = [&](char name, std::chrono::milliseconds delay) -> Coroutine<void> {
            co_await coro::sleep(delay);
            order += name;
        };
        auto slow = coro::create_task(worker('s', 30ms));
        auto fast = coro::create_task(worker('f', 1ms));
        co_await slow;
        co_await fast;
        co_return order;
    };
    EXPECT_EQ(coro::run(main()), "fs");
}

// Outside coro::run there is no loop: starting a task there is a mistake
// that gets a clear error, not a crash inside libuv.
TEST(CreateTask, OutsideRunIsAClearError) {
    auto work = []() -> Coroutine<int> { co_return 1; };
    try {
        auto handle = coro::create_task(work());
        FAIL() << "create_task outside coro::run did not throw";
    } catch (const std::logic_error& e) {
        EXPECT_NE(std::string(e.what()).find("outside coro::run"), std::string::npos) << e.what();
    }
}

TEST(CreateTask, KeepsALambdasCapturesAliveWhileItsTaskRuns) {
    auto main = []() -> Coroutine<std::string> {
        coro::Task<std::string> handle = [] {
            std::string text(100, 'x');  // heap memory, freed if the lambda were
            return coro::create_task([text]() -> Coroutine<std::string> {
                co_await coro::sleep(1ms);  // the lambda object is long gone here...
                co_return text;             // ...unless create_task kept it alive
            });
        }();
        co_return co_await handle;
    };
    EXPECT_EQ(coro::run(main()), std::string(100, 'x'));
}

TEST(CreateTask, JoinRethrowsTheTasksException) {
    auto main = []() -> Coroutine<bool> {
        auto handle = coro::create_task(fails());
        try {
            co_await handle;
        } catch (const std::runtime_error&) {
            co_return true;
        }
        co_return false;
    };
    EXPECT_TRUE(coro::run(main()));
}

TEST(CreateTask, ReportsAnExceptionNobodyRetrieved) {
    testing::internal::CaptureStderr();
    auto main = []() -> Coroutine<void> {
        { auto ignored = coro::create_task(fails()); }  // handle dropped at once
        co_await coro::sleep(1ms);
    };
    coro::run(main());
    EXPECT_NE(testing::internal::GetCapturedStderr().find("never retrieved: boom"),
              std::string::npos);
}

TEST(Cancel, ThrowsCancelledErrorAtTheSuspendedAwait) {
    auto main = []() -> Coroutine<std::string> {
        std::string log;
        auto sleeper = coro::create_task([&]() -> Coroutine<void> {
            try {
                co_await coro::sleep(1h);
                log += "woke";
            } catch (const coro::CancelledError&) {
                log += "cancelled";
                throw;
            }
        });
        co_await coro::sleep(1ms);  // let it reach its sleep
        sleeper.cancel();
        try {
            co_await sleeper;
        } catch (const coro::CancelledError&) {
            log += "+joined";
        }
        EXPECT_TRUE(sleeper.cancelled());
        co_return log;
    };
    EXPECT_EQ(coro::run(main()), "cancelled+joined");
}

TEST(Cancel, BeforeTheTaskStartsThrowsAtItsFirstAwait) {
    auto main = []() -> Coroutine<int> {
        int reached = 0;
        auto task = coro::create_task([&]() -> Coroutine<void> {
            reached = 1;  // code before the first await runs
            co_await coro::sleep(1h);
            reached = 2;
        });
        task.cancel();
        co_await join_cancelled(task);
        co_return reached;
    };
    EXPECT_EQ(coro::run(main()), 1);
}

TEST(Cancel, ATaskMayCatchItAndGoOn) {
    auto main = []() -> Coroutine<int> {
        auto task = coro::create_task([]() -> Coroutine<int> {
            try {
                co_await coro::sleep(1h);
            } catch (const coro::CancelledError&) {
            }
            co_await coro::sleep(1ms);  // one cancel, one error: this one runs
            co_return 7;
        });
        co_await coro::sleep(1ms);
        task.cancel();
        co_return co_await task;
    };
    EXPECT_EQ(coro::run(main()), 7);
}

TEST(Cancel, PassesThroughAnAwaitedTask) {
    auto main = []() -> Coroutine<bool> {
        bool inner_cancelled = false;
        auto inner = coro::create_task([&]() -> Coroutine<void> {
            try {
                co_await coro::sleep(1h);
            } catch (const coro::CancelledError&) {
                inner_cancelled = true;
                throw;
            }
        });
        auto outer = coro::create_task([&]() -> Coroutine<void> { co_await inner; });
        co_await coro::sleep(1ms);
        outer.cancel();
        co_await join_cancelled(outer);
        co_return inner_cancelled;
    };
    EXPECT_TRUE(coro::run(main()));
}

TEST(WaitFor, ReturnsTheResultInTime) {
    auto main = []() -> Coroutine<int> { co_return co_await coro::wait_for(answer(), 10s); };
    EXPECT_EQ(coro::run(main()), 42);
}

TEST(WaitFor, TimesOutOnlyAfterTheTaskHasCleanedUp) {
    auto main = []() -> Coroutine<std::string> {
        std::string log;
        auto slow = [&]() -> Coroutine<void> {
            bool cancelled = false;
            try {
                co_await coro::sleep(1h);
            } catch (const coro::CancelledError&) {
                cancelled = true;
            }
            if (cancelled) {
                co_await coro::sleep(5ms);  // cleanup that itself takes time
                log += "cleaned;";
                throw coro::CancelledError();
            }
        };
        try {
            co_await coro::wait_for(slow(), 10ms);
        } catch (const coro::TimeoutError&) {
            log += "timeout";
        }
        co_return log;
    };
    EXPECT_EQ(coro::run(main()), "cleaned;timeout");
}

TEST(Gather, ReturnsResultsInOrder) {
    auto main = []() -> Coroutine<std::vector<int>> {
        auto value_after = [](int v, std::chrono::milliseconds d) -> Coroutine<int> {
            co_await coro::sleep(d);
            co_return v;
        };
        std::vector<Coroutine<int>> tasks;
        tasks.push_back(value_after(1, 20ms));
        tasks.push_back(value_after(2, 1ms));
        tasks.push_back(value_after(3, 10ms));
        co_return co_await coro::gather(std::move(tasks));
    };
    EXPECT_EQ(coro::run(main()), (std::vector<int>{1, 2, 3}));
}

// A result is moved out of its task once: gather must not hand back what is
// left behind (an int survives a second move; a string is empty after it).
TEST(Gather, ReturnsResultsThatCanOnlyBeMovedOnce) {
    auto main = []() -> Coroutine<std::vector<std::string>> {
        auto word = [](std::string w) -> Coroutine<std::string> {
            co_await coro::sleep(1ms);
            co_return w;
        };
        std::vector<Coroutine<std::string>> tasks;
        tasks.push_back(word("first, long enough not to fit in a short string"));
        tasks.push_back(word("second"));
        co_return co_await coro::gather(std::move(tasks));
    };
    EXPECT_EQ(coro::run(main()), (std::vector<std::string>{
                                     "first, long enough not to fit in a short string", "second"}));
}

TEST(Gather, TheFirstErrorCancelsTheRest) {
    auto main = []() -> Coroutine<std::string> {
        int cancelled = 0;
        auto failing = []() -> Coroutine<void> {
            co_await coro::sleep(1ms);
            throw std::runtime_error("first failure");
        };
        std::vector<Coroutine<void>> tasks;
        tasks.push_back(sleep_until_cancelled(cancelled));
        tasks.push_back(failing());
        tasks.push_back(sleep_until_cancelled(cancelled));
        try {
            co_await coro::gather(std::move(tasks));
        } catch (const std::runtime_error& e) {
            co_return std::string(e.what()) + " / cancelled " + std::to_string(cancelled);
        }
        co_return "no error";
    };
    EXPECT_EQ(coro::run(main()), "first failure / cancelled 2");
}

TEST(Gather, CancellingGatherCancelsEveryChild) {
    auto main = []() -> Coroutine<int> {
        int cancelled = 0;
        auto gathering = coro::create_task([&]() -> Coroutine<void> {
            std::vector<Coroutine<void>> tasks;
            tasks.push_back(sleep_until_cancelled(cancelled));
            tasks.push_back(sleep_until_cancelled(cancelled));
            co_await coro::gather(std::move(tasks));
        });
        co_await coro::sleep(1ms);
        gathering.cancel();
        co_await join_cancelled(gathering);
        co_return cancelled;
    };
    EXPECT_EQ(coro::run(main()), 2);
}

TEST(TaskGroup, WaitReturnsOnceEveryTaskHasFinished) {
    auto main = []() -> Coroutine<std::string> {
        std::string order;
        coro::TaskGroup group;
        for (int i = 3; i >= 1; --i) {
            group.create_task([&order, i]() -> Coroutine<void> {
                co_await coro::sleep(std::chrono::milliseconds(i * 5));
                order += std::to_string(i);
            });
        }
        EXPECT_EQ(group.size(), 3u);
        co_await group.wait();
        EXPECT_EQ(group.size(), 0u);
        co_return order;
    };
    EXPECT_EQ(coro::run(main()), "123");
}

TEST(TaskGroup, CancelCancelsEveryTaskStillRunning) {
    auto main = []() -> Coroutine<int> {
        int cancelled = 0;
        coro::TaskGroup group;
        group.create_task(sleep_until_cancelled(cancelled));
        group.create_task(sleep_until_cancelled(cancelled));
        co_await coro::sleep(1ms);
        group.cancel();
        co_await group.wait();
        co_return cancelled;
    };
    EXPECT_EQ(coro::run(main()), 2);
}

// A cancel that comes after the task was woken but before it runs again is
// for its next await: the wake-up is not lost, the hook is not left behind.
TEST(Cancel, AfterAWakeUpGoesToTheNextAwait) {
    auto main = []() -> Coroutine<std::string> {
        coro::Event event;
        std::string log;
        auto waiter = coro::create_task([&]() -> Coroutine<void> {
            co_await event.wait();
            log += "woken;";
            try {
                co_await coro::sleep(1h);
            } catch (const coro::CancelledError&) {
                log += "cancelled at the next await";
                throw;
            }
        });
        co_await coro::sleep(1ms);
        event.set();      // on the ready queue now...
        waiter.cancel();  // ...and cancelled before it runs
        co_await join_cancelled(waiter);
        co_return log;
    };
    EXPECT_EQ(coro::run(main()), "woken;cancelled at the next await");
}

TEST(ToThread, RunsTheCallableOnAnotherThread) {
    auto main = []() -> Coroutine<bool> {
        const auto loop_thread = std::this_thread::get_id();
        auto pool_thread = co_await coro::to_thread([] { return std::this_thread::get_id(); });
        co_return pool_thread != loop_thread&& std::this_thread::get_id() == loop_thread;
    };
    EXPECT_TRUE(coro::run(main()));
}

TEST(ToThread, ResultsArriveInOrderWhenAwaitedInOrder) {
    auto main = []() -> Coroutine<std::vector<int>> {
        std::vector<Coroutine<int>> tasks;
        for (int i = 0; i < 8; ++i) {
            tasks.push_back(coro::to_thread([i] {
                std::this_thread::sleep_for(std::chrono::milliseconds((8 - i) * 2));
                return i;
            }));
        }
        std::vector<int> results;
        for (auto& task : tasks)
            results.push_back(co_await task);
        co_return results;
    };
    EXPECT_EQ(coro::run(main()), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
}

TEST(ToThread, PassesTheExceptionBackAndWorksForVoid) {
    auto main = []() -> Coroutine<std::string> {
        int side_effect = 0;
        co_await coro::to_thread([&side_effect] { side_effect = 7; });
        try {
            co_await coro::to_thread([]() -> int { throw std::runtime_error("from the pool"); });
        } catch (const std::runtime_error& e) {
            co_return std::to_string(side_effect) + " " + e.what();
        }
        co_return "no exception";
    };
    EXPECT_EQ(coro::run(main()), "7 from the pool");
}

// The work cannot be stopped: a cancelled awaiter waits for it to finish,
// then throws CancelledError (and the result is dropped).
TEST(ToThread, ACancelledAwaiterWaitsForTheWorkFirst) {
    auto main = []() -> Coroutine<std::string> {
        std::atomic<bool> finished{false};
        auto task = coro::create_task([&]() -> Coroutine<int> {
            co_return co_await coro::to_thread([&finished] {
                std::this_thread::sleep_for(30ms);
                finished = true;
                return 1;
            });
        });
        co_await coro::sleep(5ms);
        task.cancel();
        try {
            co_await task;
        } catch (const coro::CancelledError&) {
            co_return finished ? "cancelled after the work" : "cancelled before the work ended";
        }
        co_return "not cancelled";
    };
    EXPECT_EQ(coro::run(main()), "cancelled after the work");
}

TEST(Event, WakesEveryWaiter) {
    auto main = []() -> Coroutine<int> {
        coro::Event event;
        int woken = 0;
        auto waiter = [&]() -> Coroutine<void> {
            co_await event.wait();
            ++woken;
        };
        auto a = coro::create_task(waiter());
        auto b = coro::create_task(waiter());
        co_await coro::sleep(1ms);
        EXPECT_EQ(woken, 0);
        event.set();
        co_await a;
        co_await b;
        co_return woken;
    };
    EXPECT_EQ(coro::run(main()), 2);
}

// ---------------------------------------------------------------------------
// The libuv bridge: Future, Request, uv_loop -- what exercise 3 is built from

// A libuv request whose callback sets a Future: the awaiting task gets the
// result, and it is not resumed inside the callback (rule 2) -- it runs only
// after the callback has returned.
TEST(Bridge, ACallbackSetsAFutureAndTheTaskRunsAfterTheCallback) {
    static std::string log;
    log.clear();
    auto main = []() -> Coroutine<int> {
        using Work = coro::Request<uv_work_t, int>;
        auto work = std::make_unique<Work>();
        coro::Future<int> answer = work->future;
        const int rc = uv_queue_work(
            coro::uv_loop(), &work->req, [](uv_work_t*) {},
            [](uv_work_t* req, int) {
                auto done = Work::owner(req);
                done->future.set_result(42);
                log += "callback returns;";
            });
        if (rc != 0) throw std::runtime_error("uv_queue_work");
        work.release();
        const int got = co_await answer;
        log += "task resumed;";
        co_return got;
    };
    EXPECT_EQ(coro::run(main()), 42);
    EXPECT_EQ(log, "callback returns;task resumed;");
}

TEST(Bridge, AFutureCarriesAnExceptionAndOnlyItsFirstResult) {
    auto main = []() -> Coroutine<std::string> {
        coro::Future<int> future;
        auto setter = coro::create_task([future]() mutable -> Coroutine<void> {
            future.set_exception(std::make_exception_ptr(std::runtime_error("no answer")));
            future.set_result(1);  // too late: the first result counts
            co_return;
        });
        co_await setter;
        try {
            co_await future;
        } catch (const std::runtime_error& e) {
            co_return e.what();
        }
        co_return "no exception";
    };
    EXPECT_EQ(coro::run(main()), "no answer");
}

// A callback that resumes a coroutine itself breaks rule 2: the task's next
// wait says so with a logic_error, instead of running outside the loop's
// bookkeeping (and crashing later).
TEST(Bridge, ACoroutineResumedByACallbackIsStoppedAtItsNextWait) {
    struct Direct {  // an awaiter that breaks the rule on purpose
        uv_timer_t* timer;
        bool await_ready() const noexcept { return false; }
        void await_suspend(std::coroutine_handle<> h) {
            timer->data = h.address();
            uv_timer_start(
                timer,
                [](uv_timer_t* t) { std::coroutine_handle<>::from_address(t->data).resume(); }, 1,
                0);
        }
        void await_resume() {}
    };
    auto main = []() -> Coroutine<std::string> {
        auto* timer = new uv_timer_t;
        uv_timer_init(coro::uv_loop(), timer);
        std::string what = "no error";
        try {
            Direct direct{timer};
            co_await direct;
            co_await coro::sleep(1ms);  // a wait, outside any task
        } catch (const std::logic_error& e) {
            what = e.what();
        }
        uv_close(reinterpret_cast<uv_handle_t*>(timer),
                 [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
        co_return what;
    };
    std::string result;
    EXPECT_NO_THROW(result = coro::run(main()));
    EXPECT_NE(result.find("resumed outside the loop's ready queue"), std::string::npos) << result;
}

TEST(TaskGroup, CreateTaskReturnsATaskWithItsResult) {
    auto main = []() -> Coroutine<int> {
        coro::TaskGroup group;
        coro::Task<int> task = group.create_task(answer());
        EXPECT_EQ(group.size(), 1u);
        co_await group.wait();
        EXPECT_EQ(group.size(), 0u);
        co_return task.result();
    };
    EXPECT_EQ(coro::run(main()), 42);
}

TEST(Run, CancelsLeftoverTasksAndClosesForgottenHandles) {
    static bool leftover_cancelled = false;
    auto main = []() -> Coroutine<void> {
        (void)coro::create_task([]() -> Coroutine<void> {
            try {
                co_await coro::sleep(1h);
            } catch (const coro::CancelledError&) {
                leftover_cancelled = true;
                throw;
            }
        });
        // A listening server that nobody closes.
        auto server = co_await coro::start_server(
            [](coro::StreamReader, coro::StreamWriter) -> Coroutine<void> { co_return; },
            "127.0.0.1", 0);
        co_await coro::sleep(1ms);
    };
    EXPECT_NO_THROW(coro::run(main()));  // run() throws if uv_loop_close fails
    EXPECT_TRUE(leftover_cancelled);
}

TEST(Run, SignalWatchTurnsASignalIntoAnAwait) {
    auto main = []() -> Coroutine<int> {
        coro::SignalWatch watch({SIGUSR1});
        auto raiser = coro::create_task([]() -> Coroutine<void> {
            co_await coro::sleep(1ms);
            std::raise(SIGUSR1);
        });
        int got = co_await watch.wait();
        co_await raiser;
        co_return got;
    };
    EXPECT_EQ(coro::run(main()), SIGUSR1);
}

// A server makes its SignalWatch before printing "listening on": a signal
// that comes before anybody awaits must be kept, not kill the process.
TEST(Run, SignalWatchKeepsASignalThatCameBeforeTheWait) {
    auto main = []() -> Coroutine<int> {
        coro::SignalWatch watch({SIGUSR2});
        std::raise(SIGUSR2);         // nobody is waiting yet
        co_await coro::sleep(10ms);  // the loop sees the signal meanwhile
        co_return co_await watch.wait();
    };
    EXPECT_EQ(coro::run(main()), SIGUSR2);
}

// Each wait() takes one signal: a second wait() waits for the next one (a
// server's second Ctrl+C), it does not return the first one again.
TEST(Run, SignalWatchWaitReturnsEachSignalOnce) {
    auto main = []() -> Coroutine<bool> {
        coro::SignalWatch watch({SIGUSR2});
        std::raise(SIGUSR2);
        co_await watch.wait();
        auto second = coro::create_task(watch.wait());
        co_await coro::sleep(20ms);
        const bool waited = !second.done();  // no second signal yet
        std::raise(SIGUSR2);
        co_await second;
        co_return waited;
    };
    EXPECT_TRUE(coro::run(main()));
}

// g++ 12 destroys brace-initialised temporaries inside a co_await expression
// twice (`co_await take({Tracked{}, 2})`). The runtime never needs one: every
// awaiter comes from a function, and values travel through named variables.
// This counts live objects through create_task, wait_for and gather.
int live_objects = 0;
struct Tracked {
    Tracked() { ++live_objects; }
    Tracked(const Tracked&) { ++live_objects; }
    Tracked(Tracked&&) noexcept { ++live_objects; }
    ~Tracked() { --live_objects; }
};
Coroutine<int> consume(Tracked t) {
    (void)t;
    co_await coro::sleep(1ms);
    co_return 1;
}

TEST(CompilerTraps, NoTemporaryIsDestroyedTwice) {
    live_objects = 0;
    auto main = []() -> Coroutine<int> {
        Tracked value;
        int total = co_await consume(value);
        total += co_await coro::wait_for(consume(value), 10s);
        std::vector<Coroutine<int>> tasks;
        tasks.push_back(consume(value));
        tasks.push_back(consume(value));
        for (int v : co_await coro::gather(std::move(tasks)))
            total += v;
        auto handle = coro::create_task([value]() { return consume(value); });
        total += co_await handle;
        co_return total;
    };
    EXPECT_EQ(coro::run(main()), 5);
    EXPECT_EQ(live_objects, 0);
}

// ---------------------------------------------------------------------------
// Streams, over loopback

TEST(Streams, ReadExactlyGetsWholeMessages) {
    auto result = with_connection(echo, [](coro::Connection& c) -> Coroutine<std::string> {
        c.writer.write("hello, ");
        c.writer.write("world");
        co_return co_await c.reader.readexactly(12);
    });
    EXPECT_EQ(result, "hello, world");
}

TEST(Streams, ReadExactlyAtEndOfStreamCarriesThePartialBytes) {
    auto result = with_connection(echo, [](coro::Connection& c) -> Coroutine<std::string> {
        c.writer.write("abc");
        c.writer.write_eof();  // the echo server closes after echoing
        try {
            co_await c.reader.readexactly(10);
        } catch (const coro::IncompleteReadError& e) {
            co_return e.partial + "/" + std::to_string(e.expected);
        }
        co_return "no error";
    });
    EXPECT_EQ(result, "abc/10");
}

// The peer sends 4 bytes, pauses, sends 6. A readexactly(10) cancelled in
// the pause must not lose the first 4.
TEST(Streams, CancellingAPendingReadKeepsBufferedBytes) {
    auto sender = [](coro::StreamReader reader, coro::StreamWriter writer) -> Coroutine<void> {
        writer.write("0123");
        co_await reader.readexactly(2);  // "go"
        writer.write("456789");
        co_await reader.read();  // until the client closes
        writer.close();
    };
    auto result = with_connection(sender, [](coro::Connection& c) -> Coroutine<std::string> {
        auto attempt = coro::create_task(
            [&]() -> Coroutine<std::string> { co_return co_await c.reader.readexactly(10); });
        co_await coro::sleep(5ms);
        attempt.cancel();
        co_await join_cancelled(attempt);
        c.writer.write("go");
        std::string all = co_await c.reader.readexactly(10);
        c.writer.close();
        co_return all;
    });
    EXPECT_EQ(result, "0123456789");
}

// A task cancelled in drain() while 32 MiB are still queued: its frame goes
// away, libuv keeps writing from buffers the write requests own, and the
// peer receives every byte. (Under ASan, any use of freed memory fails here.)
TEST(Streams, CancellingDuringALargeWriteIsSafe) {
    constexpr std::size_t total = 32 * 1024 * 1024;
    auto counter = [](coro::StreamReader reader, coro::StreamWriter writer) -> Coroutine<void> {
        co_await reader.readexactly(2);  // "go": only now start reading
        std::size_t received = 0;
        while (true) {
            std::string chunk = co_await reader.read();
            if (chunk.empty()) break;
            received += chunk.size();
        }
        writer.write(std::to_string(received));
        writer.close();
    };
    auto result = with_connection(counter, [&](coro::Connection& c) -> Coroutine<std::string> {
        c.writer.write("go");
        auto writer_task = coro::create_task([&]() -> Coroutine<void> {
            std::string block(1024 * 1024, 'w');
            for (std::size_t sent = 0; sent < total; sent += block.size())
                c.writer.write(block);
            co_await c.writer.drain();  // cancelled while waiting here
        });
        co_await coro::sleep(1ms);
        writer_task.cancel();
        co_await join_cancelled(writer_task);
        c.writer.write_eof();
        co_return co_await c.reader.read();
    });
    EXPECT_EQ(result, std::to_string(total));
}

TEST(Streams, DrainWaitsWhileThePeerIsNotReading) {
    auto lazy = [](coro::StreamReader reader, coro::StreamWriter writer) -> Coroutine<void> {
        co_await coro::sleep(20ms);  // not reading yet
        while (!(co_await reader.read()).empty()) {
        }
        writer.close();
    };
    auto result = with_connection(lazy, [](coro::Connection& c) -> Coroutine<bool> {
        c.writer.write(std::string(16 * 1024 * 1024, 'd'));
        EXPECT_GT(c.writer.write_buffer_size(), 64u * 1024)
            << "kernel buffers took 16 MiB at once?";
        co_await c.writer.drain();
        const bool drained = c.writer.write_buffer_size() <= 16 * 1024;
        c.writer.close();
        co_return drained;
    });
    EXPECT_TRUE(result);
}

TEST(Streams, ReadlineSplitsLinesAndKeepsALastOneWithoutANewline) {
    auto result = with_connection(echo, [](coro::Connection& c) -> Coroutine<std::string> {
        c.writer.write("one\ntw");
        c.writer.write("o\n\nlast");
        c.writer.write_eof();
        std::string all;
        while (true) {
            std::string line = co_await c.reader.readline();
            if (line.empty()) break;  // the end
            all += "[" + line + "]";
        }
        co_return all;
    });
    EXPECT_EQ(result, "[one\n][two\n][\n][last]");
}

TEST(Streams, OpenConnectionSaysWhyItFailed) {
    auto main = []() -> Coroutine<std::string> {
        // A port nobody listens on: bind one and close it again.
        auto server = co_await coro::start_server(
            [](coro::StreamReader, coro::StreamWriter) -> Coroutine<void> { co_return; },
            "127.0.0.1", 0);
        const std::string address = server.address();
        server.close();
        co_await server.wait_closed();
        const auto port =
            static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
        try {
            co_await coro::open_connection("127.0.0.1", port);
        } catch (const coro::ConnectionError& e) {
            co_return e.what();
        }
        co_return "connected?";
    };
    EXPECT_NE(coro::run(main()).find("cannot connect"), std::string::npos);
}

// ---------------------------------------------------------------------------
// Edge cases: never crash, never grow

// A coroutine that starts at once and that the test destroys by hand.
struct Eager {
    struct promise_type {
        Eager get_return_object() {
            return {std::coroutine_handle<promise_type>::from_promise(*this)};
        }
        std::suspend_never initial_suspend() noexcept { return {}; }
        std::suspend_always final_suspend() noexcept { return {}; }
        void return_void() {}
        void unhandled_exception() { std::terminate(); }
    };
    std::coroutine_handle<promise_type> handle;
};
Eager park_on(coro::WaitList& list, int& woken) {
    co_await list.wait();
    ++woken;
}

// A frame destroyed while parked leaves its wait list: a later wake_all must
// not touch the freed awaiter (or resume the destroyed frame).
// A wait may decline a wake-up (woken() says no): it stays on the list, in
// the callback that woke it, and the next wake_all() asks it again. This is
// how FrameReader::next() waits for a whole frame, not just for bytes.
struct SecondWakeUp : coro::WaitList::Waiter {
    SecondWakeUp(coro::WaitList& list, int& asked) : Waiter(list, false), asked_(asked) {}
    bool woken() noexcept override { return ++asked_ == 2; }
    int& asked_;
};
SecondWakeUp wait_for_second_wake_up(coro::WaitList& list, int& asked) {
    return SecondWakeUp(list, asked);  // (from a function: see CompilerTraps)
}

TEST(WaitList, AWaitThatDeclinesAWakeUpStaysOnTheList) {
    auto main = []() -> Coroutine<int> {
        coro::WaitList list;
        int asked = 0;
        auto waker = coro::create_task([&]() -> Coroutine<void> {
            list.wake_all();  // declined: still waiting
            list.wake_all();  // taken
            co_return;
        });
        co_await wait_for_second_wake_up(list, asked);
        co_await waker;
        co_return asked;
    };
    EXPECT_EQ(coro::run(main()), 2);
}

TEST(WaitList, AWaiterWhoseFrameIsDestroyedLeavesTheList) {
    auto main = []() -> Coroutine<int> {
        coro::WaitList list;
        int woken = 0;
        Eager gone = park_on(list, woken);
        Eager stays = park_on(list, woken);
        gone.handle.destroy();
        list.wake_all();
        co_await coro::sleep(1ms);  // the ready queue runs
        stays.handle.destroy();
        co_return woken;
    };
    EXPECT_EQ(coro::run(main()), 1);
}

// After main returns, run() cancels each leftover task once, then waits for
// it: a task that cleans up with awaits of its own is not cancelled again.
TEST(Run, CancelsEachLeftoverTaskOnceAndWaitsForItsCleanup) {
    static bool cleaned_up = false;
    auto main = []() -> Coroutine<void> {
        (void)coro::create_task([]() -> Coroutine<void> {
            bool cancelled = false;
            try {
                co_await coro::sleep(1h);
            } catch (const coro::CancelledError&) {
                cancelled = true;
            }
            if (cancelled) {
                co_await coro::sleep(5ms);  // cleanup that takes time
                cleaned_up = true;
            }
        });
        co_await coro::sleep(1ms);
    };
    EXPECT_NO_THROW(coro::run(main()));
    EXPECT_TRUE(cleaned_up);
}

// A leftover task that ignores its cancel and waits for something that can
// no longer happen: run() ends anyway, and frees its frame (no leak).
TEST(Run, FreesTheFrameOfALeftoverTaskNothingCanWake) {
    static int alive = 0;
    struct Counted {
        Counted() { ++alive; }
        ~Counted() { --alive; }
    };
    auto main = []() -> Coroutine<void> {
        (void)coro::create_task([]() -> Coroutine<void> {
            Counted in_the_frame;
            coro::Event never;
            try {
                co_await never.wait();
            } catch (const coro::CancelledError&) {
            }
            co_await never.wait();  // ignores the cancel: nothing wakes it now
        });
        co_await coro::sleep(1ms);
    };
    EXPECT_NO_THROW(coro::run(main()));
    EXPECT_EQ(alive, 0);
}

// An exception out of run() (here: main waits for what cannot happen) must
// leave the runtime ready for the next run.
TEST(Run, WorksAgainAfterARunThatThrew) {
    auto stuck = []() -> Coroutine<void> {
        coro::Event never;
        co_await never.wait();
    };
    EXPECT_THROW(coro::run(stuck()), std::logic_error);
    EXPECT_EQ(coro::run(answer()), 42);
}

// A read that cannot start (uv_read_start fails: this pipe cannot be read)
// throws ConnectionError instead of waiting forever.
TEST(Streams, AReadThatCannotStartThrowsConnectionError) {
    auto main = []() -> Coroutine<std::string> {
        std::string log;
        coro::StreamReader reader = coro::open_stdin();
        try {
            co_await reader.read();
            log += "read;";
        } catch (const coro::ConnectionError&) {
            log += "error;";
        }
        try {
            if (std::exception_ptr e = reader.exception()) std::rethrow_exception(e);
            log += "none";
        } catch (const coro::ConnectionError&) {
            log += "error";  // asyncio's exception(): what a parser's awaiter checks
        }
        co_return log;
    };
    // stdin, for this test, is the write end of a pipe: uv_read_start fails.
    int ends[2];
    ASSERT_EQ(pipe(ends), 0);
    const int saved_stdin = dup(STDIN_FILENO);
    dup2(ends[1], STDIN_FILENO);
    std::string result;
    EXPECT_NO_THROW(result = coro::run(main()));
    dup2(saved_stdin, STDIN_FILENO);
    for (int fd : {ends[0], ends[1], saved_stdin})
        close(fd);
    EXPECT_EQ(result, "error;error");
}

// readline() has a limit, like asyncio's StreamReader (64 KiB by default):
// a longer line raises, and its bytes stay buffered for the caller.
TEST(Streams, ReadLineRaisesPastItsLimitAndKeepsTheBytes) {
    auto result = with_connection(echo, [](coro::Connection& c) -> Coroutine<std::string> {
        const std::string long_line(100 * 1024, 'l');
        c.writer.write(long_line + "\nshort\n");
        std::string log;
        try {
            co_await c.reader.readline();
            log += "no error;";
        } catch (const coro::LimitOverrunError& e) {
            log += "overrun of " + std::to_string(e.consumed) + ";";
        }
        // The caller decides: here, skip the long line.
        std::string skipped = co_await c.reader.readexactly(long_line.size() + 1);
        log += std::to_string(skipped.size()) + ";";
        log += co_await c.reader.readline();
        c.writer.close();
        co_return log;
    });
    EXPECT_EQ(result, "overrun of 102401;102401;short\n");
}

// The limit can be set; a line exactly that long is fine, and a peer that
// never sends a newline is cut short once the limit is passed.
TEST(Streams, ReadLineLimitCanBeSet) {
    auto result = with_connection(echo, [](coro::Connection& c) -> Coroutine<std::string> {
        c.reader.set_limit(4);
        c.writer.write("four\nfive!");
        std::string log = co_await c.reader.readline() + ";";
        try {
            co_await c.reader.readline();  // 5 bytes buffered, no newline yet
        } catch (const coro::LimitOverrunError& e) {
            log += "overrun of " + std::to_string(e.consumed) + ";";
        }
        log += co_await c.reader.readexactly(5);
        c.writer.close();
        co_return log;
    });
    EXPECT_EQ(result, "four\n;overrun of 5;five!");
}

// A server writes a block too big for the kernel's buffers, then write_eof()
// and close() at once: close() must not cut what write_eof() is still
// sending.
TEST(Streams, WriteEofThenCloseDeliversEveryQueuedByte) {
    constexpr std::size_t total = 8 * 1024 * 1024;
    auto sender = [](coro::StreamReader, coro::StreamWriter writer) -> Coroutine<void> {
        writer.write(std::string(total, 'e'));
        writer.write_eof();
        writer.close();
        co_await writer.wait_closed();
    };
    auto result = with_connection(sender, [](coro::Connection& c) -> Coroutine<std::size_t> {
        std::size_t received = 0;
        try {
            while (true) {
                std::string chunk = co_await c.reader.read();
                if (chunk.empty()) break;
                received += chunk.size();
            }
        } catch (const coro::ConnectionError&) {
            // reset: the rest was dropped
        }
        c.writer.close();
        co_return received;
    });
    EXPECT_EQ(result, total);
}

// Thousands of 4-byte writes (zero-length frames) to a peer that reads
// nothing: they are counted in buffered(), and they cost one growing buffer
// with at most one uv_write in flight, not one request per write.
TEST(Streams, SmallWritesToAStalledPeerShareOneWriteRequest) {
    auto stalled = [](coro::StreamReader, coro::StreamWriter) -> Coroutine<void> {
        co_await coro::sleep(1h);  // never reads
    };
    auto result = with_connection(stalled, [](coro::Connection& c) -> Coroutine<std::string> {
        // Fill the kernel's buffers first, so what follows stays with us.
        std::size_t written = 16 * 1024 * 1024;
        c.writer.write(std::string(written, 'f'));
        for (int i = 0; i < 20'000; ++i) {
            c.writer.write(std::string_view("\0\0\0\0", 4));
            written += 4;
        }
        co_await coro::sleep(20ms);  // let the loop write what the kernel takes
        const std::size_t buffered = c.writer.write_buffer_size();
        // Every request in flight in the loop (uv_loop_t's public count): the
        // connect is done and the peer writes nothing, so these are our writes.
        const unsigned requests = coro::uv_loop()->active_reqs.count;
        c.writer.abort();
        co_return std::to_string(buffered == written) + " " + std::to_string(requests);
    });
    EXPECT_EQ(result, "1 1");
}

// The hook a trace uses (stage 04's --trace-json): every step of every task,
// numbered from main's 1, begun and ended in turn; and the loop's waits.
std::vector<std::pair<bool, std::uint64_t>> observed_steps;
int observed_waits = 0;

TEST(Observe, SeesEveryStepOfEveryTaskAndTheLoopsWaits) {
    observed_steps.clear();
    observed_waits = 0;
    coro::observe(
        {.step = [](bool begin, std::uint64_t task) { observed_steps.emplace_back(begin, task); },
         .wait =
             [](bool begin) {
                 if (begin) ++observed_waits;
             }});
    auto main = []() -> Coroutine<void> {
        auto child = coro::create_task(coro::sleep(1ms));  // task 2
        co_await child;
    };
    coro::run(main());
    coro::observe({});
    // main: its start, and its return once the child is done; the child:
    // its start, and its return once the timer has fired.
    const std::vector<std::pair<bool, std::uint64_t>> expected = {
        {true, 1}, {false, 1}, {true, 2}, {false, 2}, {true, 2}, {false, 2}, {true, 1}, {false, 1}};
    EXPECT_EQ(observed_steps, expected);
    EXPECT_GE(observed_waits, 1);  // for the timer, at least
}

}  // namespace
