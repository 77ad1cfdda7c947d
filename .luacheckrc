std = "luajit"
max_line_length = 120
files["test/"] = { globals = { "TestThread", "TestCodec", "TestShm", "TestCdef", "TestPool",
  "TestMutex", "TestCond", "TestBarrier", "TestSemaphore", "TestAtomic", "TestGate", "TestChannel" } }
