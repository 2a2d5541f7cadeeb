// The shim's side of the ABI check (abi_layout.inc): every struct of shim.h has the size, the
// field offsets and sizes, and the number of fields the table states. Only static_asserts.
#include <cstddef>
#include <type_traits>
#include <utility>

#include "shim.h"

namespace mv8 {
namespace {

// Converts to the type of any field (declared only: used in unevaluated contexts).
struct AnyField {
  template <class T>
  operator T() const;
};

template <class T, class Indices, class = void>
struct TakesInitializers : std::false_type {};

template <class T, size_t... I>
struct TakesInitializers<T, std::index_sequence<I...>, std::void_t<decltype(T{(void(I), AnyField{})...})>>
    : std::true_type {};

// The number of fields of the aggregate T: how many initializers `T{...}` takes. Each field,
// a struct one included, takes a whole AnyField (it converts), so none is elided into.
template <class T, size_t N = 0>
constexpr size_t FieldCount() {
  if constexpr (TakesInitializers<T, std::make_index_sequence<N + 1>>::value) {
    return FieldCount<T, N + 1>();
  } else {
    return N;
  }
}

#define MV8_STRUCT(name, size, fields)                                        \
  static_assert(sizeof(name) == (size), "size of " #name " (abi_layout.inc)"); \
  static_assert(FieldCount<name>() == (fields), "number of fields of " #name " (abi_layout.inc)");
#define MV8_FIELD(name, field, offset, size)                                                     \
  static_assert(offsetof(name, field) == (offset), "offset of " #name "." #field " (abi_layout.inc)"); \
  static_assert(sizeof(std::declval<name>().field) == (size), "size of " #name "." #field " (abi_layout.inc)");
#define MV8_CONST(name, value) static_assert((name) == (value), #name " (abi_layout.inc)");
#include "abi_layout.inc"
#undef MV8_STRUCT
#undef MV8_FIELD
#undef MV8_CONST

}  // namespace
}  // namespace mv8
