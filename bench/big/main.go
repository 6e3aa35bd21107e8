// big links a large part of the standard library, as services do, so the
// bench has thousands of functions to attach to. It does a little of
// everything once and exits.
package main

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"html/template"
	"image"
	"image/png"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/smtp"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

func main() {
	var out bytes.Buffer
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "x.go", "package x\nfunc F() int { return 1 }\n", 0)
	if err == nil {
		ast.Inspect(file, func(ast.Node) bool { return true })
		printer.Fprint(&out, fset, file)
	}
	json.NewEncoder(&out).Encode(map[string]int{"a": 1})
	xml.NewEncoder(&out).Encode(struct{ A int }{1})
	csv.NewWriter(&out).Write([]string{"a", "b"})
	gz := gzip.NewWriter(&out)
	gz.Write([]byte("hello"))
	gz.Close()
	zip.NewWriter(&out).Close()
	fmt.Fprint(&out, sha256.Sum256([]byte("x")), new(big.Int).Exp(big.NewInt(2), big.NewInt(100), nil))
	template.Must(template.New("t").Parse("{{.}}")).Execute(&out, "<x>")
	regexp.MustCompile(`a+b`).MatchString("aab")
	png.Encode(&out, image.NewGray(image.Rect(0, 0, 1, 1)))
	mail.ParseAddress("a@b.c")
	_ = smtp.PlainAuth
	_ = tls.Client
	_, _ = x509.SystemCertPool()
	_ = sql.Drivers()
	s := []string{"b", "a"}
	sort.Strings(s)
	tw := tabwriter.NewWriter(&out, 0, 8, 1, ' ', 0)
	tw.Flush()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	resp, err := http.Get(srv.URL)
	if err == nil {
		resp.Body.Close()
	}
	srv.Close()
	log.New(&out, "", 0).Print(strings.Repeat("x", 3), time.Now().Year() > 2000)
	fmt.Fprintln(os.Stdout, "big: ok", out.Len() > 0)
}
