// Command etcd is the etcd server from the go.etcd.io/etcd/server/v3 module.
// That module ships the server as a library (etcdmain); its own main package
// lives in a module with local replace directives, which `go install` refuses,
// so this two-line entry point stands in for it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
