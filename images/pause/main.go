// Command pause is the sandbox process of every pod on the local node (scripts/localenv/node.sh):
// it holds the pod's namespaces open, reaps the orphans that end up with it as their parent, and
// exits on SIGTERM or SIGINT. The upstream pause image lives in a registry, and nothing here is
// ever pulled, so the node builds its own from this file.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for received := range signals {
		if received != syscall.SIGCHLD {
			os.Exit(0)
		}
		reapChildren()
	}
}

// reapChildren collects every child that has exited, so none stays a zombie.
func reapChildren() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
