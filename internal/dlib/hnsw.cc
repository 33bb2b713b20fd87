// hnswlib (Debian's libhnswlib-dev 0.6.2) behind a C interface.
// hnswlib.h defines non-inline functions, so this must stay the only
// translation unit that includes it.
//
// hnswlib allows adds concurrent with searches but leaves a few races,
// closed here: the first element (entry), same-label add/delete (stripes),
// the deletion counter and updates (marks), and searches reading the
// levels while the entry point moves (vs_hnsw_search). One remains: adds
// draw their random level from a shared generator without a lock, so two
// concurrent adds may draw the same level; that shapes the graph, it
// cannot corrupt it.
#include "hnsw.h"

#include <hnswlib/hnswlib.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <queue>
#include <string>
#include <vector>

namespace {

using Graph = hnswlib::HierarchicalNSW<float>;
using hnswlib::tableint;

// Labels are striped over this many locks so that an add and a delete of
// one label never interleave (hnswlib checks, then acts).
constexpr size_t kStripes = 256;

struct Index {
	explicit Index(int dim) : space(dim), dim(dim) {}
	~Index() { delete g; }

	hnswlib::L2Space space;  // must outlive g, which points into it
	int dim;
	Graph* g = nullptr;
	std::mutex stripes[kStripes];
	// hnswlib updates num_deleted_ without a lock (a lost update would
	// make searches return deleted elements) and updatePoint draws from a
	// shared generator: both happen only under marks.
	std::mutex marks;
	// Two adds into an empty graph would both become the entry point,
	// leaving one unreachable: the first element goes in alone.
	std::mutex first;

	std::mutex& stripe(uint64_t label) { return stripes[(label * 0x9E3779B97F4A7C15ull) >> 56]; }
};

char* dup(const char* s) {
	size_t n = strlen(s) + 1;
	char* out = static_cast<char*>(malloc(n));
	if (out != nullptr) memcpy(out, s, n);
	return out;
}

char* fail(const std::string& what) { return dup(what.c_str()); }

constexpr tableint kNone = static_cast<tableint>(-1);

// entry reads the entry point, which adds change without a lock (kNone
// while the graph is empty).
tableint entry(const Graph* g) { return __atomic_load_n(&g->enterpoint_node_, __ATOMIC_ACQUIRE); }

// find returns label's internal id, or false if hnswlib has never seen it.
bool find(Graph* g, uint64_t label, tableint* id) {
	std::lock_guard<std::mutex> lock(g->cur_element_count_guard_);
	auto it = g->label_lookup_.find(label);
	if (it == g->label_lookup_.end()) return false;
	*id = it->second;
	return true;
}

// check refuses a loaded graph whose entry point or links lie outside it:
// a search would read out of bounds.
std::string check(Graph* g) {
	size_t n = g->cur_element_count;
	if (n == 0 ? g->enterpoint_node_ != kNone
	           : g->enterpoint_node_ >= n || g->element_levels_[g->enterpoint_node_] != g->maxlevel_) {
		return "the snapshot's entry point is invalid";
	}
	for (size_t i = 0; i < n; i++) {
		for (int level = 0; level <= g->element_levels_[i]; level++) {
			tableint* list = g->get_linklist_at_level(i, level);
			size_t count = g->getListCount(list);
			if (count > (level == 0 ? g->maxM0_ : g->maxM_)) return "the snapshot has an oversized link list";
			for (size_t j = 1; j <= count; j++) {
				if (list[j] >= n || g->element_levels_[list[j]] < level) return "the snapshot has a link outside the graph";
			}
		}
	}
	return "";
}

// hugepages asks the kernel to back the graph's main block with 2 MiB
// pages: a search or an insertion touches a few thousand vectors spread
// over hundreds of megabytes, and with 4 KiB pages nearly every one costs
// a TLB miss. Only a hint; errors are ignored.
void hugepages(Graph* g) {
	constexpr uintptr_t huge = 2u << 20;
	uintptr_t start = reinterpret_cast<uintptr_t>(g->data_level0_memory_);
	uintptr_t end = start + g->max_elements_ * g->size_data_per_element_;
	start = (start + huge - 1) & ~(huge - 1);
	end &= ~(huge - 1);
	if (end > start) madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE);
}

// readAt reads exactly n bytes at off.
bool readAt(int fd, void* buf, size_t n, off_t off) {
	char* p = static_cast<char*>(buf);
	while (n > 0) {
		ssize_t got = pread(fd, p, std::min<size_t>(n, 1u << 30), off);
		if (got <= 0) {
			if (got < 0 && errno == EINTR) continue;
			return false;
		}
		p += got;
		n -= got;
		off += got;
	}
	return true;
}

// The header of hnswlib's snapshot format, field by field (saveIndex).
struct Header {
	size_t offset_level0, max_elements, count, size_per_element, label_offset, offset_data;
	int max_level;
	tableint entry;
	size_t max_m, max_m0, m;
	double mult;
	size_t ef_construction;
};
constexpr size_t kHeaderSize = 6 * sizeof(size_t) + sizeof(int) + sizeof(tableint) + 3 * sizeof(size_t) +
                               sizeof(double) + sizeof(size_t);

Header parseHeader(const char* b) {
	Header h;
	size_t at = 0;
	auto take = [&](auto* field) {
		memcpy(field, b + at, sizeof(*field));
		at += sizeof(*field);
	};
	take(&h.offset_level0);
	take(&h.max_elements);
	take(&h.count);
	take(&h.size_per_element);
	take(&h.label_offset);
	take(&h.offset_data);
	take(&h.max_level);
	take(&h.entry);
	take(&h.max_m);
	take(&h.max_m0);
	take(&h.m);
	take(&h.mult);
	take(&h.ef_construction);
	return h;
}

// load reads a snapshot in hnswlib's format into g, which must come from
// the do-nothing constructor. hnswlib's own loadIndex walks the file twice
// with a seek and two tells (system calls) per element and grows its label
// map one insertion at a time: 9 s for a million vectors. This reads the
// file in two large reads and builds the same structures; it returns an
// error message, or "".
std::string load(Graph* g, hnswlib::L2Space* space, int dim, const char* path, size_t max_elements) {
	// Until filled in, g must be safe to destroy.
	g->data_level0_memory_ = nullptr;
	g->linkLists_ = nullptr;
	g->visited_list_pool_ = nullptr;
	g->cur_element_count = 0;

	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return std::string("open: ") + strerror(errno);
	struct Closer {
		int fd;
		~Closer() { close(fd); }
	} closer{fd};
	struct stat st;
	if (fstat(fd, &st) != 0) return std::string("stat: ") + strerror(errno);
	size_t size = st.st_size;
	char raw[kHeaderSize];
	if (size < kHeaderSize || !readAt(fd, raw, kHeaderSize, 0)) return "not an HNSW snapshot (too short)";
	Header h = parseHeader(raw);
	size_t links0 = h.max_m0 * sizeof(tableint) + sizeof(hnswlib::linklistsizeint);
	if (h.offset_level0 != 0 || h.m < 2 || h.max_m != h.m || h.max_m0 != 2 * h.m || h.max_m0 > 0xffff ||
	    h.offset_data != links0 || h.label_offset != h.offset_data + dim * sizeof(float) ||
	    h.size_per_element != h.label_offset + sizeof(hnswlib::labeltype) || !(h.mult > 0)) {
		return "not an HNSW snapshot of " + std::to_string(dim) + "-dimensional vectors";
	}
	if (h.count > (size - kHeaderSize) / h.size_per_element) return "truncated snapshot";
	// The room saved, unless absurd, so that the first add after a load
	// does not resize.
	size_t room = std::max({max_elements, std::min(h.max_elements, 2 * h.count + 1024), h.count, size_t(1)});

	g->max_elements_ = room;
	g->size_data_per_element_ = h.size_per_element;
	g->size_links_per_element_ = h.max_m * sizeof(tableint) + sizeof(hnswlib::linklistsizeint);
	g->size_links_level0_ = links0;
	g->offsetLevel0_ = 0;
	g->offsetData_ = h.offset_data;
	g->label_offset_ = h.label_offset;
	g->M_ = h.m;
	g->maxM_ = h.max_m;
	g->maxM0_ = h.max_m0;
	g->ef_construction_ = std::max(h.ef_construction, h.m);
	g->mult_ = h.mult;
	g->revSize_ = 1.0 / h.mult;
	g->maxlevel_ = h.max_level;
	g->enterpoint_node_ = h.entry;
	g->ef_ = 10;
	g->data_size_ = space->get_data_size();
	g->fstdistfunc_ = space->get_dist_func();
	g->dist_func_param_ = space->get_dist_func_param();
	g->metric_distance_computations = 0;
	g->metric_hops = 0;

	g->data_level0_memory_ = static_cast<char*>(malloc(room * h.size_per_element));
	g->linkLists_ = static_cast<char**>(calloc(room, sizeof(char*)));
	if (g->data_level0_memory_ == nullptr || g->linkLists_ == nullptr) return "not enough memory";
	hugepages(g);
	g->element_levels_.assign(room, 0);
	g->cur_element_count = h.count;  // from here the destructor frees what is set
	size_t level0 = h.count * h.size_per_element;
	if (!readAt(fd, g->data_level0_memory_, level0, kHeaderSize)) return "truncated snapshot";

	std::vector<char> rest(size - kHeaderSize - level0);
	if (!readAt(fd, rest.data(), rest.size(), kHeaderSize + level0)) return "truncated snapshot";
	size_t at = 0;
	for (size_t i = 0; i < h.count; i++) {
		unsigned int bytes;
		if (rest.size() - at < sizeof(bytes)) return "truncated snapshot";
		memcpy(&bytes, rest.data() + at, sizeof(bytes));
		at += sizeof(bytes);
		if (bytes == 0) continue;
		if (bytes % g->size_links_per_element_ != 0 || bytes > rest.size() - at) return "damaged snapshot (link lists)";
		char* list = static_cast<char*>(malloc(bytes));
		if (list == nullptr) return "not enough memory";
		memcpy(list, rest.data() + at, bytes);
		at += bytes;
		g->linkLists_[i] = list;
		g->element_levels_[i] = bytes / g->size_links_per_element_;
	}
	if (at != rest.size()) return "damaged snapshot (trailing bytes)";

	g->label_lookup_.reserve(h.count);
	size_t deleted = 0;
	for (size_t i = 0; i < h.count; i++) {
		if (!g->label_lookup_.emplace(g->getExternalLabel(i), i).second) return "the snapshot repeats labels";
		deleted += g->isMarkedDeleted(i);
	}
	g->num_deleted_ = deleted;
	std::vector<std::mutex>(room).swap(g->link_list_locks_);
	std::vector<std::mutex>(Graph::max_update_element_locks).swap(g->link_list_update_locks_);
	g->visited_list_pool_ = new hnswlib::VisitedListPool(1, room);
	return check(g);
}

// searchBottom is the search of the bottom layer: a best-first walk from
// ep keeping the ef nearest (live) elements seen, as hnswlib's
// searchBaseLayerST, with one change for speed: a node's unvisited
// neighbours are collected first and all their vectors prefetched before
// any distance is computed, so that their cache misses overlap instead of
// following one another (a 128-D vector is 8 cache lines; hnswlib
// prefetches one line of the next vector only). Same results, 1.4 times
// faster on a million vectors (docs/benchmarks.md).
template <bool kDeletions>
std::priority_queue<std::pair<float, tableint>> searchBottom(const Graph* g, tableint ep, const void* q, size_t ef) {
	hnswlib::VisitedList* vl = g->visited_list_pool_->getFreeVisitedList();
	hnswlib::vl_type* visited = vl->mass;
	hnswlib::vl_type tag = vl->curV;
	const size_t lines = (g->data_size_ + 63) / 64;
	auto vector = [g](tableint id) { return g->getDataByInternalId(id); };
	auto fetch = [&](tableint id) {
		const char* p = vector(id);
		for (size_t l = 0; l < lines; l++) __builtin_prefetch(p + 64 * l);
	};

	std::priority_queue<std::pair<float, tableint>> top;         // worst on top
	std::priority_queue<std::pair<float, tableint>> candidates;  // nearest on top (negated)
	float d = g->fstdistfunc_(q, vector(ep), g->dist_func_param_);
	float bound = std::numeric_limits<float>::max();
	if (!kDeletions || !g->isMarkedDeleted(ep)) {
		top.emplace(d, ep);
		bound = d;
	}
	candidates.emplace(-d, ep);
	visited[ep] = tag;
	std::vector<tableint> fresh(g->maxM0_);
	while (!candidates.empty()) {
		auto [negd, c] = candidates.top();
		if (-negd > bound && top.size() >= ef) break;
		candidates.pop();
		tableint* list = g->get_linklist0(c);
		// A list being rewritten by a concurrent add still holds valid ids;
		// its count never exceeds maxM0_, but fresh must not overflow.
		size_t count = std::min<size_t>(g->getListCount(list), g->maxM0_);
		tableint* links = list + 1;
		size_t n = 0;
		for (size_t j = 0; j < count; j++) {
			tableint id = links[j];
			if (visited[id] != tag) {
				visited[id] = tag;
				fresh[n++] = id;
			}
		}
		for (size_t i = 0; i < n; i++) fetch(fresh[i]);
		for (size_t i = 0; i < n; i++) {
			tableint id = fresh[i];
			float dist = g->fstdistfunc_(q, vector(id), g->dist_func_param_);
			if (top.size() < ef || dist < bound) {
				candidates.emplace(-dist, id);
				if (!kDeletions || !g->isMarkedDeleted(id)) top.emplace(dist, id);
				if (top.size() > ef) top.pop();
				if (!top.empty()) bound = top.top().first;
			}
		}
		if (!candidates.empty()) __builtin_prefetch(g->get_linklist0(candidates.top().second));
	}
	g->visited_list_pool_->releaseVisitedList(vl);
	return top;
}

}  // namespace

extern "C" {

void* vs_hnsw_new(int dim, size_t max_elements, int m, int ef_construction, uint64_t seed, char** err) {
	Index* h = nullptr;
	try {
		h = new Index(dim);
		h->g = new Graph(&h->space, std::max<size_t>(max_elements, 1), m, ef_construction, seed);
		hugepages(h->g);
		return h;
	} catch (const std::exception& e) {
		delete h;
		*err = fail(std::string("create graph: ") + e.what());
		return nullptr;
	}
}

void* vs_hnsw_load(const char* path, int dim, size_t max_elements, char** err) {
	Index* h = nullptr;
	try {
		h = new Index(dim);
		h->g = new Graph(&h->space);
		std::string bad = load(h->g, &h->space, dim, path, max_elements);
		if (!bad.empty()) {
			delete h;
			*err = fail(bad);
			return nullptr;
		}
		return h;
	} catch (const std::exception& e) {
		delete h;
		*err = fail(e.what());
		return nullptr;
	}
}

void vs_hnsw_free(void* p) { delete static_cast<Index*>(p); }

int vs_hnsw_add(void* p, uint64_t label, const float* vec, char** err) {
	Index* h = static_cast<Index*>(p);
	Graph* g = h->g;
	std::lock_guard<std::mutex> key(h->stripe(label));
	try {
		tableint id;
		if (find(g, label, &id)) {
			std::lock_guard<std::mutex> lock(h->marks);
			if (g->isMarkedDeleted(id)) g->unmarkDeletedInternal(id);
			g->addPoint(vec, label);  // finds the label: updates in place
			return VS_HNSW_OK;
		}
		{
			std::lock_guard<std::mutex> lock(g->cur_element_count_guard_);
			if (g->cur_element_count >= g->max_elements_) return VS_HNSW_FULL;
		}
		if (entry(g) == kNone) {
			std::lock_guard<std::mutex> lock(h->first);
			if (entry(g) == kNone) {
				g->addPoint(vec, label);
				return VS_HNSW_OK;
			}
		}
		g->addPoint(vec, label);
		return VS_HNSW_OK;
	} catch (const std::exception& e) {
		// A concurrent add may have taken the last room between the check
		// and hnswlib's own, which throws before changing anything.
		std::lock_guard<std::mutex> lock(g->cur_element_count_guard_);
		if (g->label_lookup_.count(label) == 0 && g->cur_element_count >= g->max_elements_) return VS_HNSW_FULL;
		*err = fail(e.what());
		return VS_HNSW_ERROR;
	}
}

int vs_hnsw_delete(void* p, uint64_t label) {
	Index* h = static_cast<Index*>(p);
	Graph* g = h->g;
	std::lock_guard<std::mutex> key(h->stripe(label));
	tableint id;
	if (!find(g, label, &id)) return 0;
	std::lock_guard<std::mutex> lock(h->marks);
	if (g->isMarkedDeleted(id)) return 0;
	g->markDeletedInternal(id);
	return 1;
}

int vs_hnsw_search(void* p, const float* q, int k, int ef, uint64_t* labels, float* dists, char** err) {
	Graph* g = static_cast<Index*>(p)->g;
	try {
		// The entry point's own level, not maxlevel_: a concurrent add may
		// raise maxlevel_ before or after it moves the entry point.
		tableint cur = entry(g);
		if (cur == kNone || k <= 0) return 0;
		const void* param = g->dist_func_param_;
		float best = g->fstdistfunc_(q, g->getDataByInternalId(cur), param);
		for (int level = g->element_levels_[cur]; level > 0; level--) {
			for (bool moved = true; moved;) {
				moved = false;
				tableint* list = g->get_linklist(cur, level);
				size_t count = g->getListCount(list);
				for (size_t j = 1; j <= count; j++) {
					float d = g->fstdistfunc_(q, g->getDataByInternalId(list[j]), param);
					if (d < best) {
						best = d;
						cur = list[j];
						moved = true;
					}
				}
			}
		}
		size_t width = std::max(ef, k);
		auto top = g->num_deleted_ ? searchBottom<true>(g, cur, q, width) : searchBottom<false>(g, cur, q, width);
		// The k nearest of the ef found, equal distances by label, so that
		// which of several equal vectors make the cut does not depend on
		// the walk.
		std::vector<std::pair<float, uint64_t>> found;
		found.reserve(top.size());
		for (; !top.empty(); top.pop()) found.emplace_back(top.top().first, g->getExternalLabel(top.top().second));
		size_t n = std::min(found.size(), static_cast<size_t>(k));
		std::partial_sort(found.begin(), found.begin() + n, found.end());
		for (size_t i = 0; i < n; i++) {
			dists[i] = found[i].first;
			labels[i] = found[i].second;
		}
		return static_cast<int>(n);
	} catch (const std::exception& e) {
		*err = fail(e.what());
		return -1;
	}
}

char* vs_hnsw_resize(void* p, size_t max_elements) {
	try {
		Graph* g = static_cast<Index*>(p)->g;
		g->resizeIndex(max_elements);
		hugepages(g);
		return nullptr;
	} catch (const std::exception& e) {
		return fail(e.what());
	}
}

char* vs_hnsw_save(void* p, const char* path) {
	Graph* g = static_cast<Index*>(p)->g;
	try {
		g->saveIndex(path);
		// saveIndex ignores write errors: a short file is how they show.
		size_t want = 6 * sizeof(size_t) + sizeof(int) + sizeof(tableint) + 3 * sizeof(size_t) + sizeof(double) +
		              sizeof(size_t) + g->cur_element_count * g->size_data_per_element_;
		for (size_t i = 0; i < g->cur_element_count; i++) {
			want += sizeof(unsigned int);
			if (g->element_levels_[i] > 0) want += g->size_links_per_element_ * g->element_levels_[i];
		}
		struct stat st;
		if (stat(path, &st) != 0) return fail(std::string("write ") + path + ": " + strerror(errno));
		if (static_cast<size_t>(st.st_size) != want) {
			return fail(std::string("write ") + path + ": short write (" + std::to_string(st.st_size) + " of " +
			            std::to_string(want) + " bytes)");
		}
		return nullptr;
	} catch (const std::exception& e) {
		return fail(e.what());
	}
}

size_t vs_hnsw_live(void* p) {
	Graph* g = static_cast<Index*>(p)->g;
	std::lock_guard<std::mutex> lock(static_cast<Index*>(p)->marks);
	std::lock_guard<std::mutex> count(g->cur_element_count_guard_);
	return g->cur_element_count - g->num_deleted_;
}

size_t vs_hnsw_size(void* p) {
	Graph* g = static_cast<Index*>(p)->g;
	std::lock_guard<std::mutex> lock(g->cur_element_count_guard_);
	return g->cur_element_count;
}

size_t vs_hnsw_capacity(void* p) { return static_cast<Index*>(p)->g->max_elements_; }

size_t vs_hnsw_labels(void* p, uint64_t* out, size_t cap) {
	Graph* g = static_cast<Index*>(p)->g;
	size_t n = 0;
	for (size_t i = 0; i < g->cur_element_count && n < cap; i++) {
		if (!g->isMarkedDeleted(i)) out[n++] = g->getExternalLabel(i);
	}
	return n;
}

int vs_hnsw_vector(void* p, uint64_t label, float* out) {
	Index* h = static_cast<Index*>(p);
	tableint id;
	if (!find(h->g, label, &id) || h->g->isMarkedDeleted(id)) return 0;
	memcpy(out, h->g->getDataByInternalId(id), h->dim * sizeof(float));
	return 1;
}

}  // extern "C"
