// The program `cargo xtask demo` traces: a little deterministic work, so
// the funccount table it prints can be checked by hand.
//
//	isPrime: 10000 calls, fib: 21891 calls (fib(20) recursing),
//	greet: 1 call, main: 1 call.
package main

import "fmt"

//go:noinline
func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

//go:noinline
func fib(n int) int {
	if n < 2 {
		return n
	}
	return fib(n-1) + fib(n-2)
}

//go:noinline
func greet(name string) string {
	return "Hello, " + name + "!"
}

func main() {
	primes := 0
	for i := 0; i < 10000; i++ {
		if isPrime(i) {
			primes++
		}
	}
	fmt.Println(greet("BPF"), "primes below 10000:", primes, "fib(20):", fib(20))
}
