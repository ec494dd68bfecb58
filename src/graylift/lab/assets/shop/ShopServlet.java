package lab.shop;

import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.IOException;

/** The lab's sample Java app: "/" answers "shop VERSION", "/health" answers "ok VERSION" (or 500 if broken). */
public class ShopServlet extends HttpServlet {
    private String version;
    private boolean healthy;
    private String hostname;

    @Override
    public void init() {
        version = getServletContext().getInitParameter("version");
        healthy = !"false".equals(getServletContext().getInitParameter("healthy"));
        try {
            hostname = java.nio.file.Files.readString(java.nio.file.Path.of("/proc/sys/kernel/hostname")).trim();
        } catch (IOException e) {
            hostname = "unknown";
        }
    }

    @Override
    protected void doGet(HttpServletRequest req, HttpServletResponse resp) throws IOException {
        String path = req.getRequestURI();
        resp.setContentType("text/plain; charset=utf-8");
        if ("/health".equals(path)) {
            resp.setStatus(healthy ? 200 : 500);
            resp.getWriter().print((healthy ? "ok " : "broken ") + version + "\n");
        } else if ("/".equals(path)) {
            resp.getWriter().print("shop " + version + " " + hostname + "\n");
        } else {
            resp.setStatus(404);
            resp.getWriter().print("not found\n");
        }
    }
}
